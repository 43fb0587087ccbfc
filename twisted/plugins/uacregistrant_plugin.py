"""The twistd plugin: ``twistd -n uac-registrant [options]``.

No ``__init__.py`` here or in ``twisted/``: this file joins Twisted's own
``twisted.plugins`` package on install.  Imports are lazy so that twistd's
plugin scan stays cheap.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IServiceMaker, IPlugin)
class _RegistrantServiceMaker:
    tapname = "uac-registrant"
    description = "Keeps outbound SIP registrations alive (OpenSIPS uac_registrant compatible)."

    @property
    def options(self):
        from uacregistrant.tap import Options

        return Options

    def makeService(self, options):
        from uacregistrant.tap import makeService

        return makeService(options)


serviceMaker = _RegistrantServiceMaker()
