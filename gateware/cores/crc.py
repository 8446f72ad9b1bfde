"""CRC-16/CCITT-FALSE over a byte stream, one byte per clock, from the spec's constants."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..spec.protocol import CRC_INIT, CRC_POLY, CRC_WIDTH

__all__ = ["CRC16", "crc_byte_equations"]


def crc_byte_equations(width=CRC_WIDTH, poly=CRC_POLY):
    """Return, for each next-state bit, the set of inputs it is the XOR of.

    Inputs are numbered ``0 .. width-1`` for the current CRC bits and ``width .. width+7`` for
    the data byte bits. Computed by running the bitwise (MSB-first, non-reflected) algorithm
    symbolically, with sets standing for XOR sums, so the gateware matches ``crc16()`` by
    construction.
    """
    state = [{i} for i in range(width)]
    for bit in range(8):
        # MSB first: data bit 7 meets the top CRC bit in the first step.
        state[width - 1] = state[width - 1] ^ {width + 7 - bit}
        feedback = state[width - 1]
        shifted = [set()] + state[:width - 1]
        state = [shifted[i] ^ feedback if (poly >> i) & 1 else shifted[i]
                 for i in range(width)]
    return state


class CRC16(wiring.Component):
    """CRC-16/CCITT-FALSE, one byte per clock cycle.

    * ``clear``: load ``CRC_INIT``. With ``valid`` in the same cycle, the byte is folded into
      ``CRC_INIT`` instead, so a frame's first byte can arrive with its ``clear``.
    * ``valid``, ``data``: fold ``data`` (8 bits) into the CRC at the next clock edge.
    * ``crc``: the registered CRC of every byte since the last ``clear`` (16 bits).
    """

    clear: In(1)
    valid: In(1)
    data: In(8)
    crc: Out(CRC_WIDTH, init=CRC_INIT)

    def elaborate(self, platform):
        m = Module()
        current = Signal(CRC_WIDTH)
        m.d.comb += current.eq(self.clear.replicate(CRC_WIDTH) & CRC_INIT
                               | ~self.clear.replicate(CRC_WIDTH) & self.crc)
        inputs = Cat(current, self.data)
        next_bits = []
        for terms in crc_byte_equations():
            bit = 0
            for index in sorted(terms):
                bit = bit ^ inputs[index]
            next_bits.append(bit)

        with m.If(self.valid):
            m.d.sync += self.crc.eq(Cat(*next_bits))
        with m.Elif(self.clear):
            m.d.sync += self.crc.eq(CRC_INIT)
        return m
