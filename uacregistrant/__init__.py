"""uac-registrant: keeps outbound SIP registrations alive."""

__version__ = "0.1.0"

from . import compiled as _compiled  # noqa: E402  (after the version, which setup.py reads)

if _compiled.forced_pure():
    _compiled.use_source()
