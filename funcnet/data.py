"""``funcnet.data``: an alias of :mod:`funcnet.utils.data` (the torch path)."""

from funcnet.utils.data import *  # noqa: F401,F403
from funcnet.utils.data import __all__  # noqa: F401
