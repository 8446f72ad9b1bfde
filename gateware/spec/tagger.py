"""Bob's time tagger: its register block and event record layouts (filled in by the tagger work).

``TAGGER_BLOCK`` is placed in ``REGISTER_MAP`` by ``gateware.spec.registers``.
"""

from .registers_base import Block

__all__ = ["TAGGER_BLOCK"]

TAGGER_BLOCK = Block("tagger", 0x0100, 0x0100, "Reserved for Bob's time tagger.", ())
