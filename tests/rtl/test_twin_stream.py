"""Windowed streaming against the RTL: the LINK image in Verilator (``hil.twin``), over TCP."""

import random

import pytest

from controller.device import Device
from controller.link.client import STREAM_CHUNK, LinkClient
from controller.link.codec import FrameDecoder, decode_frame
from controller.link.transport import Transport, open_transport
from gateware.spec.protocol import Opcode, StreamChannel, reply_opcode
from hil.twin import Twin

pytestmark = pytest.mark.cocotb

LOOPBACK = StreamChannel.LOOPBACK.value


class InFlight(Transport):
    """Pass bytes through; record the most STREAM_H2D frames ever sent and not yet answered."""

    def __init__(self, inner):
        super().__init__(None, inner.url, inner.baudrate)
        self.inner, self.unanswered, self.most = inner, 0, 0
        self.decoder = FrameDecoder()

    def write(self, data):
        if decode_frame(data[:-1]).opcode == Opcode.STREAM_H2D.value:
            self.unanswered += 1
            self.most = max(self.most, self.unanswered)
        self.inner.write(data)

    def read(self, timeout):
        data = self.inner.read(timeout)
        for frame in self.decoder.feed(data):
            if frame.opcode == reply_opcode(Opcode.STREAM_H2D).value:
                self.unanswered -= 1
        return data

    def close(self):
        self.inner.close()


def test_windowed_stream_through_the_gateware_intact():
    """Frames in flight (as many as the 512-byte loopback FIFO's reported room allows) go
    through the gateware's UART, RX FIFO and executor and come back intact and in order, with
    nothing refused, retried or dropped."""
    seed = 21
    data = random.Random(seed).randbytes(12 * STREAM_CHUNK + 100)
    with Twin() as twin:
        wire = InFlight(open_transport(twin.url, timeout=5.0))
        dev = Device(LinkClient(wire, timeout=5.0, retries=2, window=8))
        dev.write("core.command", clear_counters=1)
        dev.write("core.control", loopback=1)
        ranges = dev.link.stream_write(LOOPBACK, data, stall_timeout=120)
        assert dev.link.stream_read(LOOPBACK, len(data), timeout=120) == data, f"seed {seed}"
        offsets = [0]
        for _, n in ranges:
            offsets.append(offsets[-1] + n)
        assert [o for o, _ in ranges] == offsets[:-1] and offsets[-1] == len(data)   # in order
        s = dev.link.stats
        assert s.retries == 0 and s.stream_recoveries == 0 and s.stream_bytes == len(data)
        assert s.window_stalls + s.room_stalls > 0
        counters = {name: dev.read(f"link.{name}")
                    for name in ("crc_errors", "cobs_errors", "uart_errors", "bad_requests")}
        assert counters == dict.fromkeys(counters, 0), counters
        assert wire.most >= 2, "never more than one frame in flight"
        dev.close()
