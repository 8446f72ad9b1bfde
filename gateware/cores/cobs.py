"""COBS framing on byte streams: decode wire bytes into frame tokens, encode frames to wire bytes.

The golden model is ``gateware.spec.cobs``; a frame on the wire is its COBS encoding followed by
one 0x00 delimiter (see ``gateware.spec.protocol``).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
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


#: What the fill side tells the drain side about a buffered block.
_BLOCK_INFO = data.StructLayout({
    "code": 8,       # the block's code byte
    "length": 8,     # buffered data bytes, 0..254
    "frame_end": 1,  # the block is the frame's last: a 0x00 delimiter follows it
    "final": 1,      # the frame ended on a 0x00 byte: an empty block (0x01) follows first
})


class COBSEncoder(wiring.Component):
    """Encode frames from ``i_stream`` into COBS wire bytes on ``o_stream``, each frame followed
    by a 0x00 delimiter.

    Non-zero bytes are buffered in one of two 254-byte banks of a memory (one 512 x 8 block RAM)
    until a 0x00, the 254th byte or the frame's last byte closes the block; then its code byte
    and data go out at one byte per cycle while the other bank fills, so a continuous input
    costs one cycle per output byte, and at most one more per block when the input runs dry.
    A frame that ends on a full block gets no extra code byte (see ``gateware.spec.cobs``).
    """

    i_stream: In(stream.Signature(FRAME_BYTE))
    o_stream: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=8, depth=512, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=())
        i, o = self.i_stream, self.o_stream

        infos = Array(Signal(_BLOCK_INFO, name=f"info{n}") for n in range(2))
        full = Array(Signal(name=f"full{n}") for n in range(2))

        # Fill side: write the non-zero bytes of a block into bank ``fill``.
        fill = Signal()
        count = Signal(range(_BLOCK + 1))
        is_zero = i.payload.data == 0
        block_full = ~is_zero & (count == _BLOCK - 1)
        m.d.comb += [i.ready.eq(~full[fill]),
                     wr.addr.eq(Cat(count[:8], fill)), wr.data.eq(i.payload.data),
                     wr.en.eq(i.valid & i.ready & ~is_zero)]
        with m.If(i.valid & i.ready):
            m.d.sync += count.eq(count + ~is_zero)
            with m.If(is_zero | block_full | i.payload.last):
                m.d.sync += [
                    infos[fill].code.eq(Mux(block_full, 0xFF, count + 1 + ~is_zero)),
                    infos[fill].length.eq(count + ~is_zero),
                    infos[fill].frame_end.eq(i.payload.last),
                    infos[fill].final.eq(i.payload.last & is_zero),
                    full[fill].eq(1), fill.eq(~fill), count.eq(0),
                ]

        # Drain side: send bank ``drain``'s code byte, data, and any final block and delimiter.
        # Every decision is taken from registers: ``nidx`` is the address of the next data
        # byte to fetch (0 while the code byte waits, so the bank's first byte is fetched then),
        # ``last`` says the byte on ``o_stream`` is the block's last, and the block's ``final``
        # and ``frame_end`` flags are copied out of ``infos`` when its code byte goes.
        drain = Signal()
        nidx = Signal(8)
        left = Signal(8)            # data bytes of the block not yet sent, in DATA
        last = Signal()             # left == 1
        cur_final = Signal()
        cur_end = Signal()
        info = infos[drain]
        m.d.comb += rd.addr.eq(Cat(nidx, drain))

        def block_done(final, frame_end):
            m.d.sync += nidx.eq(0)
            with m.If(final):
                m.next = "FINAL"
            with m.Elif(frame_end):
                m.next = "DELIMIT"
            with m.Else():
                m.d.sync += [full[drain].eq(0), drain.eq(~drain)]
                m.next = "CODE"

        with m.FSM():
            with m.State("CODE"):
                # The read port fetches the bank's first byte meanwhile (nidx is 0 here).
                m.d.comb += [rd.en.eq(1), o.valid.eq(full[drain]), o.payload.eq(info.code)]
                m.d.sync += [left.eq(info.length), last.eq(info.length == 1),
                             cur_final.eq(info.final), cur_end.eq(info.frame_end)]
                with m.If(o.valid & o.ready):
                    with m.If(info.length != 0):
                        m.d.sync += nidx.eq(1)
                        m.next = "DATA"
                    with m.Else():
                        block_done(info.final, info.frame_end)
            with m.State("DATA"):
                # rd.data holds the byte on o_stream until it is taken.
                m.d.comb += [rd.en.eq(o.ready), o.valid.eq(1), o.payload.eq(rd.data)]
                with m.If(o.ready):
                    m.d.sync += [nidx.eq(nidx + 1), left.eq(left - 1), last.eq(left == 2)]
                    with m.If(last):
                        block_done(cur_final, cur_end)
            with m.State("FINAL"):
                m.d.comb += [o.valid.eq(1), o.payload.eq(0x01)]
                with m.If(o.ready):
                    m.next = "DELIMIT"
            with m.State("DELIMIT"):
                m.d.comb += [o.valid.eq(1), o.payload.eq(0x00)]
                with m.If(o.ready):
                    m.d.sync += [full[drain].eq(0), drain.eq(~drain)]
                    m.next = "CODE"
        return m
