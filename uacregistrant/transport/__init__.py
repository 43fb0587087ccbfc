"""SIP over UDP, TCP and TLS on the reactor, and the transaction layer.

The registrant depends only on ``interfaces.IRequestSender``; ``layer.TransactionLayer``
is the implementation that runs the pure client transactions of ``uacregistrant.sip``.
"""
