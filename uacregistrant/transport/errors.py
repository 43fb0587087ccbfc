"""Why a request sent through the transaction layer failed."""

from uacregistrant.sip.errors import SIPError


class TransactionTimeout(SIPError):
    """Timer F fired: no final response came back (RFC 3261 §17.1.2.2)."""


class TransportError(SIPError):
    """The request could not be sent: no socket, connect or TLS failure (§17.1.4)."""
