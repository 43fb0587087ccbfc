"""Start uac-registrant from a TOML file: ``twistd -ny registrant.tac``.

The file is ``registrant.toml`` in the working directory, or the path in
the ``UAC_REGISTRANT_CONFIG`` environment variable; its keys are the
parameter names (``hash_size = 2``, ``db_url = "sqlite:///registrant.sqlite"``).
"""

import os

from twisted.application.service import Application

from uacregistrant.tap import Options, makeService

options = Options()
options.parseOptions(["--config", os.environ.get("UAC_REGISTRANT_CONFIG", "registrant.toml")])
application = Application("uac-registrant")
makeService(options).setServiceParent(application)
