"""uac-registrant: keeps outbound SIP registrations alive."""

__version__ = "0.1.0"
