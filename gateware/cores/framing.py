"""Transmit-side frame plumbing of the link: CRC appending, frame arbitration, stream packetising.

Frames travel between these cores as streams of ``cobs.FRAME_BYTE`` beats (a byte and a ``last``
flag on the frame's final byte); the COBS encoder turns them into wire bytes.
"""

from amaranth import *
from amaranth.lib import wiring, data, stream
from amaranth.lib.wiring import In, Out

from ..spec.protocol import CRC_WIDTH, MAX_PAYLOAD, Opcode
from .cobs import FRAME_BYTE
from .crc import CRC16

__all__ = ["CRCAppender", "FrameArbiter", "StreamPacketizer"]


class CRCAppender(wiring.Component):
    """Forward each frame and append its CRC (most significant byte first) after the last byte.

    ``frames`` pulses once per frame sent, for the link's ``tx_frames`` counter.
    """

    i_stream: In(stream.Signature(FRAME_BYTE))
    o_stream: Out(stream.Signature(FRAME_BYTE))
    frames: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = CRC16()
        m.d.comb += crc.data.eq(self.i_stream.payload.data)

        with m.FSM():
            with m.State("PASS"):
                m.d.comb += [
                    self.o_stream.valid.eq(self.i_stream.valid),
                    self.o_stream.payload.data.eq(self.i_stream.payload.data),
                    self.i_stream.ready.eq(self.o_stream.ready),
                    crc.valid.eq(self.i_stream.valid & self.o_stream.ready),
                ]
                with m.If(self.i_stream.valid & self.o_stream.ready & self.i_stream.payload.last):
                    m.next = "CRC_HI"
            with m.State("CRC_HI"):
                m.d.comb += [
                    self.o_stream.valid.eq(1),
                    self.o_stream.payload.data.eq(crc.crc[8:CRC_WIDTH]),
                ]
                with m.If(self.o_stream.ready):
                    m.next = "CRC_LO"
            with m.State("CRC_LO"):
                m.d.comb += [
                    self.o_stream.valid.eq(1),
                    self.o_stream.payload.data.eq(crc.crc[0:8]),
                    self.o_stream.payload.last.eq(1),
                ]
                with m.If(self.o_stream.ready):
                    m.d.comb += [crc.clear.eq(1), self.frames.eq(1)]
                    m.next = "PASS"
        return m


class FrameArbiter(wiring.Component):
    """Merge frame streams into one, a whole frame at a time; lower index wins a tie."""

    def __init__(self, count):
        self._count = count
        super().__init__({
            "i_streams": In(stream.Signature(FRAME_BYTE)).array(count),
            "o_stream": Out(stream.Signature(FRAME_BYTE)),
        })

    def elaborate(self, platform):
        m = Module()
        grant = Signal(range(self._count))
        busy = Signal()

        with m.If(~busy):
            # Priority: the first valid input, in order.
            for i in reversed(range(self._count)):
                with m.If(self.i_streams[i].valid):
                    m.d.sync += [grant.eq(i), busy.eq(1)]
        with m.Else():
            with m.Switch(grant):
                for i in range(self._count):
                    with m.Case(i):
                        src = self.i_streams[i]
                        m.d.comb += [
                            self.o_stream.valid.eq(src.valid),
                            self.o_stream.payload.eq(src.payload),
                            src.ready.eq(self.o_stream.ready),
                        ]
                        with m.If(src.valid & src.ready & src.payload.last):
                            m.d.sync += busy.eq(0)
        return m


class StreamPacketizer(wiring.Component):
    """Cut a byte stream into ``STREAM_D2H`` frames for one channel.

    A frame starts when ``level`` (bytes waiting in the source FIFO) reaches a full payload, or
    when bytes have waited ``flush_cycles`` clock cycles; it carries ``level`` bytes (at most
    ``MAX_PAYLOAD - 1``). Its sequence number counts this channel's frames modulo 256.
    """

    def __init__(self, channel, *, flush_cycles=256, level_width=16):
        self._channel = channel
        self._flush = flush_cycles
        super().__init__({
            "i_stream": In(stream.Signature(8)),
            "level": In(level_width),
            "o_stream": Out(stream.Signature(FRAME_BYTE)),
        })

    def elaborate(self, platform):
        m = Module()
        chunk = MAX_PAYLOAD - 1
        # The FIFO's fill, registered (it only grows behind the packetizer's back, so a value one
        # cycle old is safe) to keep the FIFO's level arithmetic off the decision path.
        level = Signal.like(self.level)
        m.d.sync += level.eq(self.level)
        seq = Signal(8)
        left = Signal(range(chunk + 1))
        waited = Signal(range(self._flush + 1))

        with m.FSM():
            with m.State("WAIT"):
                with m.If(level == 0):
                    m.d.sync += waited.eq(0)
                with m.Elif(waited != self._flush):
                    m.d.sync += waited.eq(waited + 1)
                with m.If((level >= chunk) | ((level != 0) & (waited == self._flush))):
                    m.d.sync += left.eq(Mux(level >= chunk, chunk, level))
                    m.next = "OPCODE"
            with m.State("OPCODE"):
                m.d.comb += [self.o_stream.valid.eq(1),
                             self.o_stream.payload.data.eq(Opcode.STREAM_D2H.value)]
                with m.If(self.o_stream.ready):
                    m.next = "SEQ"
            with m.State("SEQ"):
                m.d.comb += [self.o_stream.valid.eq(1), self.o_stream.payload.data.eq(seq)]
                with m.If(self.o_stream.ready):
                    m.next = "CHANNEL"
            with m.State("CHANNEL"):
                m.d.comb += [self.o_stream.valid.eq(1),
                             self.o_stream.payload.data.eq(self._channel.value)]
                with m.If(self.o_stream.ready):
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [
                    self.o_stream.valid.eq(self.i_stream.valid),
                    self.o_stream.payload.data.eq(self.i_stream.payload),
                    self.o_stream.payload.last.eq(left == 1),
                    self.i_stream.ready.eq(self.o_stream.ready),
                ]
                with m.If(self.i_stream.valid & self.o_stream.ready):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.d.sync += [seq.eq(seq + 1), waited.eq(0)]
                        m.next = "GAP"
            with m.State("GAP"):
                # One cycle for the registered level to count the byte just taken.
                m.next = "WAIT"
        return m
