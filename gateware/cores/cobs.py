"""COBS framing on byte streams: decode wire bytes into frame tokens, encode frames to wire bytes.

The golden model is ``gateware.spec.cobs``; a frame on the wire is its COBS encoding followed by
one 0x00 delimiter (see ``gateware.spec.protocol``).
"""

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.protocol import MAX_FRAME

__all__ = ["FRAME_TOKEN", "FRAME_BYTE", "COBSDecoder", "COBSEncoder"]

#: A decoded frame as a stream: one beat per data byte (``end`` = 0), then one beat with
#: ``end`` = 1 (``data`` meaningless) and ``error`` = 1 if the frame was malformed.
FRAME_TOKEN = data.StructLayout({"data": 8, "end": 1, "error": 1})

#: A frame to encode: one beat per byte, ``last`` = 1 on its final byte.
FRAME_BYTE = data.StructLayout({"data": 8, "last": 1})

#: Most data bytes in one COBS block.
_BLOCK = 254


class COBSDecoder(wiring.Component):
    """Decode COBS wire bytes from ``i_stream`` into frame tokens on ``o_stream``.

    A frame is malformed (its end token has ``error`` = 1) when its delimiter arrives before the
    current block's announced data bytes, or when it decodes to more than ``max_len`` bytes; the
    excess bytes are not emitted. A delimiter with no frame before it emits nothing, so a lone
    0x00 is a legal flush. Takes one byte per cycle; ``i_stream.ready`` follows
    ``o_stream.ready`` through one register stage.
    """

    i_stream: In(stream.Signature(8))
    o_stream: Out(stream.Signature(FRAME_TOKEN))

    def __init__(self, max_len=MAX_FRAME):
        if max_len < 1:
            raise ValueError(f"COBS: max_len must be at least 1 byte, not {max_len}")
        self.max_len = max_len
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        remaining = Signal(8)       # data bytes still due in the current block
        zero_owed = Signal()        # the block that just ended implies a 0x00, if one follows
        in_frame = Signal()         # a code byte has been seen since the last delimiter
        length = Signal(range(self.max_len + 1))
        error = Signal()

        i, o = self.i_stream, self.o_stream
        m.d.comb += i.ready.eq(~o.valid | o.ready)
        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)

        emit_byte = Signal()
        byte = Signal(8)
        with m.If(emit_byte):
            with m.If(length == self.max_len):
                m.d.sync += error.eq(1)
            with m.Elif(~error):
                m.d.sync += [o.valid.eq(1), o.payload.data.eq(byte), o.payload.end.eq(0),
                             o.payload.error.eq(0), length.eq(length + 1)]

        with m.If(i.valid & i.ready):
            with m.If(i.payload == 0):
                with m.If(in_frame):
                    m.d.sync += [o.valid.eq(1), o.payload.end.eq(1),
                                 o.payload.error.eq(error | (remaining != 0))]
                m.d.sync += [remaining.eq(0), zero_owed.eq(0), in_frame.eq(0), length.eq(0),
                             error.eq(0)]
            with m.Elif(remaining == 0):
                m.d.comb += [emit_byte.eq(zero_owed), byte.eq(0)]
                m.d.sync += [remaining.eq(i.payload - 1), zero_owed.eq(i.payload != 0xFF),
                             in_frame.eq(1)]
            with m.Else():
                m.d.comb += [emit_byte.eq(1), byte.eq(i.payload)]
                m.d.sync += remaining.eq(remaining - 1)
        return m


class COBSEncoder(wiring.Component):
    """Encode frames from ``i_stream`` into COBS wire bytes on ``o_stream``, each frame followed
    by a 0x00 delimiter.

    Up to 254 non-zero bytes are buffered in a memory until a 0x00, the 254th byte or the
    frame's last byte closes the block; then the code byte and the block go out at one byte per
    cycle. Input and output do not overlap: a block of ``n`` bytes takes ``n`` input cycles,
    then ``n + 1`` output cycles (plus the delimiter at the end of a frame). A frame that ends on
    a full block gets no extra code byte (see ``gateware.spec.cobs``).
    """

    i_stream: In(stream.Signature(FRAME_BYTE))
    o_stream: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=8, depth=_BLOCK, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=())

        count = Signal(range(_BLOCK + 1))   # bytes in the buffered block
        code = Signal(8)
        index = Signal(range(_BLOCK + 1))   # next buffered byte to send
        frame_end = Signal()                # the buffered block ends the frame
        final_block = Signal()              # after it, an empty final block (0x01) is due

        i, o = self.i_stream, self.o_stream
        m.d.comb += [wr.addr.eq(count), wr.data.eq(i.payload.data), rd.addr.eq(index),
                     rd.en.eq(1)]

        with m.FSM():
            with m.State("FILL"):
                m.d.comb += i.ready.eq(1)
                with m.If(i.valid):
                    is_zero = i.payload.data == 0
                    m.d.comb += wr.en.eq(~is_zero)
                    m.d.sync += count.eq(count + ~is_zero)
                    full = ~is_zero & (count == _BLOCK - 1)
                    with m.If(is_zero | full | i.payload.last):
                        m.d.sync += [code.eq(Const(0xFF, 8)), frame_end.eq(i.payload.last),
                                     final_block.eq(i.payload.last & is_zero)]
                        with m.If(~full):
                            m.d.sync += code.eq(count + 1 + ~is_zero)
                        m.d.sync += index.eq(0)
                        m.next = "CODE"
            with m.State("CODE"):
                # The read port fetches buffer[0] during this cycle.
                m.d.comb += [o.valid.eq(1), o.payload.eq(code)]
                with m.If(o.ready):
                    with m.If(count != 0):
                        m.d.comb += rd.addr.eq(0)
                        m.next = "DATA"
                    with m.Else():
                        m.next = "NEXT"
            with m.State("DATA"):
                m.d.comb += [o.valid.eq(1), o.payload.eq(rd.data)]
                with m.If(o.ready):
                    m.d.comb += rd.addr.eq(index + 1)
                    m.d.sync += index.eq(index + 1)
                    with m.If(index + 1 == count):
                        m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += count.eq(0)
                with m.If(~frame_end):
                    m.next = "FILL"
                with m.Elif(final_block):
                    m.d.sync += [code.eq(1), final_block.eq(0)]
                    m.next = "CODE"
                with m.Else():
                    m.next = "DELIMIT"
            with m.State("DELIMIT"):
                m.d.comb += [o.valid.eq(1), o.payload.eq(0)]
                with m.If(o.ready):
                    m.next = "FILL"
        return m
