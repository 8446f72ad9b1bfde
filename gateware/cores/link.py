"""The host link: decodes request frames, executes them against the register bank and the
host-to-device streams, and sends replies multiplexed with device-to-host stream frames.

Byte-level core: UARTs sit outside (``gateware.top``), so the Amaranth simulator tests can feed
bytes directly while the cocotb tests drive the pins. The rules it implements are the spec's
(``gateware.spec.protocol``): a frame with bad COBS or a bad CRC is dropped and counted, never
executed; every valid frame gets exactly one reply; retried side-effecting requests are not
executed twice.

Receive path:  bytes -> RX FIFO -> COBS decoder -> frame buffer + CRC check -> executor
Transmit path: executor replies + stream packetizers -> arbiter -> CRC appender -> COBS encoder
"""

from amaranth import *
from amaranth.lib import wiring, stream, fifo, enum
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..spec.protocol import (HEADER_LEN, CRC_LEN, MAX_FRAME, MAX_BURST, Opcode, ErrorCode,
                             reply_opcode)
from .cobs import FRAME_BYTE, COBSDecoder, COBSEncoder
from .crc import CRC16
from .csr import CSRBus
from .framing import CRCAppender, FrameArbiter, StreamPacketizer

__all__ = ["Link", "LINK_COUNTERS"]

#: Counters the link keeps, named as the ``link`` block's registers in the spec.
LINK_COUNTERS = ("rx_frames", "tx_frames", "crc_errors", "cobs_errors", "uart_errors",
                 "bad_requests")

_MIN_FRAME = HEADER_LEN + CRC_LEN


class _Action(enum.Enum, shape=3):
    """What the executor does with a checked frame (the CHECK state's verdict)."""
    ERROR = 0
    READ = 1
    WRITE = 2
    WRITE_RETRY = 3
    BURST = 4
    STREAM = 5
    STREAM_RETRY = 6
#: Bytes of the reply held in the shift register at most (READ_REPLY is the longest, 8 bytes).
_REPLY_BYTES = 8


class Link(wiring.Component):
    """Frame link between a byte stream from the host and the registers and streams.

    ``h2d`` and ``d2h`` list the ``StreamChannel`` members this image serves. For each host-to-
    device channel ``ch`` there is an output stream ``h2d_<ch>``, its FIFO's free space
    ``h2d_<ch>_free`` and an enable ``h2d_<ch>_enable``; for each device-to-host channel an input
    stream ``d2h_<ch>`` with its FIFO's fill ``d2h_<ch>_level``.
    """

    def __init__(self, *, h2d=(), d2h=(), rx_fifo_depth=512, flush_cycles=256):
        self._h2d = tuple(h2d)
        self._d2h = tuple(d2h)
        self._rx_depth = rx_fifo_depth
        self._flush = flush_cycles
        members = {
            "i_rx": In(stream.Signature(8)),
            "o_tx": Out(stream.Signature(8)),
            "uart_error": In(1),
            "bus": Out(CSRBus),
            "clear_counters": In(1),
        }
        for name in LINK_COUNTERS:
            members[name] = Out(32)
        for ch in self._h2d:
            members[f"h2d_{ch.name.lower()}"] = Out(stream.Signature(8))
            members[f"h2d_{ch.name.lower()}_free"] = In(16)
            members[f"h2d_{ch.name.lower()}_enable"] = In(1)
        for ch in self._d2h:
            members[f"d2h_{ch.name.lower()}"] = In(stream.Signature(8))
            members[f"d2h_{ch.name.lower()}_level"] = In(16)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()

        # ---------------------------------------------------------------- receive
        m.submodules.rx_fifo = rx_fifo = fifo.SyncFIFOBuffered(width=8, depth=self._rx_depth)
        m.submodules.cobs_dec = dec = COBSDecoder(max_len=MAX_FRAME)
        m.submodules.rx_crc = rx_crc = CRC16()
        m.submodules.buf = buf = Memory(shape=8, depth=MAX_FRAME, init=[])
        buf_w = buf.write_port()
        buf_r = buf.read_port()

        # A byte the UART delivers while the FIFO is full is lost: count it with UART errors.
        m.d.comb += [
            rx_fifo.w_data.eq(self.i_rx.payload),
            rx_fifo.w_en.eq(self.i_rx.valid),
            self.i_rx.ready.eq(1),
            dec.i_stream.valid.eq(rx_fifo.r_rdy),
            dec.i_stream.payload.eq(rx_fifo.r_data),
            rx_fifo.r_en.eq(dec.i_stream.ready),
        ]
        rx_lost = Signal()
        m.d.comb += rx_lost.eq(self.i_rx.valid & ~rx_fifo.w_rdy)

        length = Signal(range(MAX_FRAME + 1))
        opcode = Signal(8)
        seq = Signal(8)
        params = Array(Signal(8, name=f"param{i}") for i in range(6))
        frame_crc = Signal(16)
        frame_ready = Signal()   # a checked frame waits for the executor
        frame_done = Signal()    # executor pulse: the frame has been answered
        crc_error = Signal()
        cobs_error = Signal()

        tok = dec.o_stream
        m.d.comb += [rx_crc.data.eq(tok.payload.data), buf_w.data.eq(tok.payload.data),
                     buf_w.addr.eq(length)]
        with m.FSM(name="rx"):
            with m.State("RECEIVE"):
                m.d.comb += tok.ready.eq(1)
                with m.If(tok.valid & ~tok.payload.end):
                    m.d.comb += [rx_crc.valid.eq(1), buf_w.en.eq(length < MAX_FRAME)]
                    m.d.sync += [length.eq(length + 1),
                                 frame_crc.eq(Cat(tok.payload.data, frame_crc[:8]))]
                    with m.Switch(length):
                        with m.Case(0):
                            m.d.sync += opcode.eq(tok.payload.data)
                        with m.Case(1):
                            m.d.sync += seq.eq(tok.payload.data)
                        for i in range(len(params)):
                            with m.Case(HEADER_LEN + i):
                                m.d.sync += params[i].eq(tok.payload.data)
                with m.If(tok.valid & tok.payload.end):
                    with m.If(tok.payload.error | (length < _MIN_FRAME)):
                        m.d.comb += cobs_error.eq(1)
                        m.d.sync += length.eq(0)
                        m.d.comb += rx_crc.clear.eq(1)
                    with m.Else():
                        m.next = "CHECK"
            with m.State("CHECK"):
                # The CRC over a frame including its own CRC leaves a zero remainder.
                with m.If(rx_crc.crc == 0):
                    m.next = "EXECUTE"
                with m.Else():
                    m.d.comb += [crc_error.eq(1), rx_crc.clear.eq(1)]
                    m.d.sync += length.eq(0)
                    m.next = "RECEIVE"
            with m.State("EXECUTE"):
                m.d.comb += frame_ready.eq(1)
                with m.If(frame_done):
                    m.d.comb += rx_crc.clear.eq(1)
                    m.d.sync += length.eq(0)
                    m.next = "RECEIVE"

        # ---------------------------------------------------------------- execute
        bus = self.bus
        plen = Signal(range(MAX_FRAME + 1))    # payload length, registered in SETTLE
        addr = Signal(16)
        m.d.comb += addr.eq(Cat(params[1], params[0]))
        wvalue = Signal(32)
        m.d.comb += wvalue.eq(Cat(params[5], params[4], params[3], params[2]))
        count = Signal(8)
        m.d.comb += count.eq(params[2])
        channel = Signal(8)
        m.d.comb += channel.eq(params[0])

        # Retry memory: the last valid frame, and whether it was carried out.
        last_op = Signal(8)
        last_seq = Signal(8)
        last_crc = Signal(16)
        last_done = Signal()
        last_accepted = Signal(16)
        is_retry = Signal()   # decided on entry, before the memory is overwritten

        # Reply shift register: the byte in the top 8 bits goes out next.
        shreg = Signal(8 * _REPLY_BYTES)
        sh_left = Signal(range(_REPLY_BYTES + 1))
        words_left = Signal(range(MAX_BURST + 1))
        waddr = Signal(16)
        burst_last = Signal(16)
        # The bus address is a register, and the bank's decode of it is registered too: an
        # address is put on the bus one cycle before the executor looks at ``mapped``. This
        # keeps the decision path short (it limited the iCE40 image's clock to 23 MHz).
        bus_addr = Signal(16)
        m.d.comb += bus.addr.eq(bus_addr)
        err_code = Signal(8)
        err_detail = Signal(16)
        bad_request = Signal()
        rx_frame = Signal()

        reply = stream.Signature(FRAME_BYTE).create()
        m.d.comb += [
            reply.payload.data.eq(shreg[-8:]),
            reply.payload.last.eq((sh_left == 1) & (words_left == 0)),
        ]

        def load(*fields):
            """Load the reply shift register with (value, bytes) fields, first field first."""
            total = sum(n for _, n in fields)
            parts = []
            for v, n in reversed(fields):
                v = Const(v, 8 * n) if isinstance(v, int) else Value.cast(v)
                assert len(v) <= 8 * n, "reply field wider than its bytes"
                parts.append(v.as_unsigned()[:8 * n] if len(v) == 8 * n else Cat(v, Const(0, 8 * n - len(v))))
            value = Cat(*parts)
            return [shreg.eq(value << (8 * (_REPLY_BYTES - total))), sh_left.eq(total)]

        # Host-to-device stream selection.
        h2d_ok = Signal()
        h2d_free = Signal(16)
        h2d_valid = Signal()
        h2d_ready = Signal()
        h2d_data = Signal(8)
        for ch in self._h2d:
            name = f"h2d_{ch.name.lower()}"
            port = getattr(self, name)
            with m.If(channel == ch.value):
                m.d.comb += [h2d_ok.eq(getattr(self, f"{name}_enable")),
                             h2d_free.eq(getattr(self, f"{name}_free")),
                             h2d_ready.eq(port.ready)]
            m.d.comb += [port.payload.eq(h2d_data),
                         port.valid.eq(h2d_valid & (channel == ch.value))]
        dlen = Signal(range(MAX_FRAME))        # stream data length, registered in SETTLE
        len_bad = Signal()
        count_bad = Signal()
        h2d_ok_q = Signal()
        h2d_free_q = Signal(16)
        action = Signal(_Action)
        copy_idx = Signal(range(MAX_FRAME + 1))

        with m.FSM(name="exec"):
            with m.State("IDLE"):
                with m.If(frame_ready):
                    m.d.comb += rx_frame.eq(1)
                    m.d.sync += [is_retry.eq(last_done & (last_op == opcode) & (last_seq == seq) &
                                             (last_crc == frame_crc)),
                                 last_op.eq(opcode), last_seq.eq(seq), last_crc.eq(frame_crc),
                                 last_done.eq(0), words_left.eq(0)]
                    m.d.sync += bus_addr.eq(addr)
                    m.next = "SETTLE"
            with m.State("SETTLE"):
                # The bank decodes bus_addr in this cycle; CHECK sees the result. Everything
                # CHECK needs is registered here, so each of the three cycles is shallow logic.
                m.d.sync += [
                    burst_last.eq(addr + count - 1), plen.eq(length - _MIN_FRAME),
                    dlen.eq(length - _MIN_FRAME - 1),
                    len_bad.eq(Mux(opcode == Opcode.READ, length != _MIN_FRAME + 2,
                               Mux(opcode == Opcode.WRITE, length != _MIN_FRAME + 6,
                               Mux(opcode == Opcode.BURST_READ, length != _MIN_FRAME + 3,
                                   length < _MIN_FRAME + 1)))),
                    count_bad.eq((count == 0) | (count > MAX_BURST)),
                    h2d_ok_q.eq(h2d_ok),
                    h2d_free_q.eq(h2d_free),
                ]
                m.next = "CHECK"

            with m.State("CHECK"):
                # The verdict: an error (code, detail) or what to do, into registers.
                def refuse(code, detail):
                    return [action.eq(_Action.ERROR), err_code.eq(code), err_detail.eq(detail)]
                m.d.sync += action.eq(_Action.ERROR)
                with m.Switch(opcode):
                    with m.Case(Opcode.READ, Opcode.WRITE, Opcode.BURST_READ, Opcode.STREAM_H2D):
                        with m.If(len_bad):
                            m.d.sync += refuse(ErrorCode.BAD_LENGTH, plen)
                    with m.Default():
                        m.d.sync += refuse(ErrorCode.BAD_OPCODE, 0)
                with m.If(~len_bad):
                    with m.Switch(opcode):
                        with m.Case(Opcode.READ):
                            with m.If(~bus.mapped):
                                m.d.sync += refuse(ErrorCode.BAD_ADDRESS, addr)
                            with m.Else():
                                m.d.sync += action.eq(_Action.READ)
                        with m.Case(Opcode.WRITE):
                            with m.If(is_retry):
                                m.d.sync += action.eq(_Action.WRITE_RETRY)
                            with m.Elif(~bus.mapped):
                                m.d.sync += refuse(ErrorCode.BAD_ADDRESS, addr)
                            with m.Elif(~bus.writable):
                                m.d.sync += refuse(ErrorCode.READ_ONLY, addr)
                            with m.Else():
                                m.d.sync += action.eq(_Action.WRITE)
                        with m.Case(Opcode.BURST_READ):
                            with m.If(count_bad):
                                m.d.sync += refuse(ErrorCode.BAD_COUNT, count)
                            with m.Else():
                                m.d.sync += action.eq(_Action.BURST)
                        with m.Case(Opcode.STREAM_H2D):
                            with m.If(~h2d_ok_q):
                                m.d.sync += refuse(ErrorCode.BAD_CHANNEL, channel)
                            with m.Elif(is_retry):
                                m.d.sync += action.eq(_Action.STREAM_RETRY)
                            with m.Elif(dlen > h2d_free_q):
                                m.d.sync += refuse(ErrorCode.STREAM_FULL, h2d_free_q)
                            with m.Else():
                                m.d.sync += action.eq(_Action.STREAM)
                m.next = "DISPATCH"

            with m.State("DISPATCH"):
                write_reply = load((reply_opcode(Opcode.WRITE).value, 1), (seq, 1), (addr, 2))
                with m.Switch(action):
                    with m.Case(_Action.ERROR):
                        m.next = "ERROR"
                    with m.Case(_Action.READ):
                        m.d.comb += bus.r_stb.eq(1)
                        m.next = "READ_VALUE"
                    with m.Case(_Action.WRITE):
                        m.d.comb += [bus.w_stb.eq(1), bus.w_data.eq(wvalue)]
                        m.d.sync += write_reply + [last_done.eq(1)]
                        m.next = "REPLY"
                    with m.Case(_Action.WRITE_RETRY):
                        m.d.sync += write_reply + [last_done.eq(1)]
                        m.next = "REPLY"
                    with m.Case(_Action.BURST):
                        m.d.sync += [waddr.eq(addr), words_left.eq(count)]
                        m.next = "BURST_SCAN"  # bus_addr = addr, already decoded
                    with m.Case(_Action.STREAM):
                        m.d.sync += [copy_idx.eq(0), last_accepted.eq(dlen)]
                        m.next = "COPY"
                    with m.Case(_Action.STREAM_RETRY):
                        m.d.sync += last_done.eq(1)
                        m.next = "STREAM_REPLY"

            with m.State("READ_VALUE"):
                m.d.sync += load((reply_opcode(Opcode.READ).value, 1), (seq, 1), (addr, 2),
                                 (bus.r_data, 4))
                m.next = "REPLY"

            with m.State("BURST_SCAN_SETTLE"):
                m.next = "BURST_SCAN"
            with m.State("BURST_SCAN"):
                # Check every address of the burst before sending anything.
                with m.If(~bus.mapped):
                    m.d.sync += [err_code.eq(ErrorCode.BAD_ADDRESS), err_detail.eq(waddr),
                                 words_left.eq(0)]
                    m.next = "ERROR"
                with m.Elif(waddr == burst_last):
                    m.d.sync += [waddr.eq(addr), bus_addr.eq(addr),
                                 load((reply_opcode(Opcode.BURST_READ).value, 1), (seq, 1),
                                      (addr, 2), (count, 1))]
                    m.next = "REPLY"
                with m.Else():
                    m.d.sync += [waddr.eq(waddr + 1), bus_addr.eq(waddr + 1)]
                    m.next = "BURST_SCAN_SETTLE"

            with m.State("BURST_WORD"):
                m.d.comb += bus.r_stb.eq(1)   # bus_addr == waddr here
                m.d.sync += [waddr.eq(waddr + 1), bus_addr.eq(waddr + 1),
                             words_left.eq(words_left - 1)]
                m.next = "BURST_LOAD"
            with m.State("BURST_LOAD"):
                m.d.sync += load((bus.r_data, 4))
                m.next = "REPLY"

            with m.State("COPY"):
                # Frame bytes 3.. are the stream data (after opcode, sequence and channel).
                m.d.comb += buf_r.addr.eq(HEADER_LEN + 1 + copy_idx)
                with m.If(copy_idx == dlen):
                    m.d.sync += last_done.eq(1)
                    m.next = "STREAM_REPLY"
                with m.Else():
                    m.next = "COPY_PUSH"
            with m.State("COPY_PUSH"):
                m.d.comb += [h2d_data.eq(buf_r.data), h2d_valid.eq(1),
                             buf_r.addr.eq(HEADER_LEN + 1 + copy_idx)]
                with m.If(h2d_ready):
                    m.d.sync += copy_idx.eq(copy_idx + 1)
                    m.next = "COPY"

            with m.State("STREAM_REPLY"):
                m.d.sync += load((reply_opcode(Opcode.STREAM_H2D).value, 1), (seq, 1),
                                 (channel, 1), (last_accepted, 2), (h2d_free, 2))
                m.next = "REPLY"

            with m.State("ERROR"):
                m.d.comb += bad_request.eq(1)
                m.d.sync += load((Opcode.ERROR.value, 1), (seq, 1), (opcode, 1), (err_code, 1),
                                 (err_detail, 2))
                m.next = "REPLY"

            with m.State("REPLY"):
                m.d.comb += reply.valid.eq(1)
                with m.If(reply.ready):
                    m.d.sync += [shreg.eq(shreg << 8), sh_left.eq(sh_left - 1)]
                    with m.If(sh_left == 1):
                        with m.If(words_left != 0):
                            m.next = "BURST_WORD"
                        with m.Else():
                            m.d.comb += frame_done.eq(1)
                            m.next = "IDLE"

        # ---------------------------------------------------------------- transmit
        sources = [reply]
        for ch in self._d2h:
            name = f"d2h_{ch.name.lower()}"
            pk = StreamPacketizer(ch, flush_cycles=self._flush)
            m.submodules[f"pack_{ch.name.lower()}"] = pk
            wiring.connect(m, wiring.flipped(getattr(self, name)), pk.i_stream)
            m.d.comb += pk.level.eq(getattr(self, f"{name}_level"))
            sources.append(pk.o_stream)
        m.submodules.arbiter = arb = FrameArbiter(len(sources))
        for i, src in enumerate(sources):
            wiring.connect(m, src, arb.i_streams[i])
        m.submodules.tx_crc = tx_crc = CRCAppender()
        m.submodules.cobs_enc = enc = COBSEncoder()
        # A small FIFO between the arbiter and the CRC appender: its ready is a register, which
        # cuts the combinational ready chain from the COBS encoder back into the executor.
        m.submodules.tx_buf = tx_buf = fifo.SyncFIFOBuffered(width=len(arb.o_stream.payload.as_value()),
                                                             depth=4)
        m.d.comb += [
            tx_buf.w_data.eq(arb.o_stream.payload),
            tx_buf.w_en.eq(arb.o_stream.valid),
            arb.o_stream.ready.eq(tx_buf.w_rdy),
            tx_crc.i_stream.payload.eq(tx_buf.r_data),
            tx_crc.i_stream.valid.eq(tx_buf.r_rdy),
            tx_buf.r_en.eq(tx_crc.i_stream.ready),
        ]
        wiring.connect(m, tx_crc.o_stream, enc.i_stream)
        wiring.connect(m, enc.o_stream, wiring.flipped(self.o_tx))

        # ---------------------------------------------------------------- counters
        events = {
            "rx_frames": rx_frame,
            "tx_frames": tx_crc.frames,
            "crc_errors": crc_error,
            "cobs_errors": cobs_error,
            "uart_errors": self.uart_error | rx_lost,
            "bad_requests": bad_request,
        }
        for name in LINK_COUNTERS:
            counter = getattr(self, name)
            with m.If(self.clear_counters):
                m.d.sync += counter.eq(0)
            with m.Elif(events[name]):
                m.d.sync += counter.eq(counter + 1)
        return m
