"""Alice's modulator: its register block, choice and report layouts (filled in by the Alice work).

``MODULATOR_BLOCK`` is placed in ``REGISTER_MAP`` by ``gateware.spec.registers``.
"""

from .registers_base import Block

__all__ = ["MODULATOR_BLOCK"]

MODULATOR_BLOCK = Block("modulator", 0x0200, 0x0100, "Reserved for Alice's modulator.", ())
