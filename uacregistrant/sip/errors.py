"""The package's root error and the one parsing error."""


class SIPError(Exception):
    """Root of every error uac-registrant raises on purpose."""


class ParseError(SIPError):
    """Malformed SIP input; the message says why, briefly."""
