"""Single source of truth shared by the gateware and the host: register map, wire protocol and
record layouts. Only ``amaranth.lib.data`` / ``amaranth.lib.enum`` and plain Python live here."""

from .protocol import *  # noqa: F401,F403
from .registers import *  # noqa: F401,F403
