"""Settings of the test suite: the demo project's, as the single-process demo runs them.

``VISREC_SINGLE_PROCESS=1`` lets the tests (and the processes they start, which inherit
the environment) run with DEBUG off on the embedded database, in-process tasks and a
local cache; ``tests/test_production_settings.py`` checks the production start-up.
"""

import os

os.environ.setdefault("VISREC_SINGLE_PROCESS", "1")

from visrec_shop.settings import *  # noqa: E402, F403
