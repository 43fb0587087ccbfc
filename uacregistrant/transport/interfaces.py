"""The one seam between the registrant and SIP transport."""

from zope.interface import Interface


class IRequestSender(Interface):
    """Something that runs a non-INVITE client transaction per request."""

    def send_request(request, destination, local=None):
        """Send ``request`` (a Request without our Via) to ``destination``.

        ``local`` is the SocketSpec to send from, or None for the first one
        that suits the destination. Returns a Deferred firing with the final
        Response, or failing with TransactionTimeout or TransportError.
        Cancelling it abandons the transaction.
        """
