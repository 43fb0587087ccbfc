"""The sans-I/O SIP core: bytes and explicit time in, messages and deadlines out.

Nothing in this package imports Twisted (tests/sip/test_pure.py checks it).
"""
