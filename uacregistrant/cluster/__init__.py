"""Sharing tags on PostgreSQL (SPEC §2.6): one active node per tag, failover
that goes on refreshing the same bindings."""
