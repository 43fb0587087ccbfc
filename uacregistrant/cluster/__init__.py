"""Sharing tags on PostgreSQL: one active node per tag, failover
that goes on refreshing the same bindings."""
