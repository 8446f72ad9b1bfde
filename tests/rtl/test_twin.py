"""The RTL twin: the LINK image in Verilator, reached over a real TCP socket by the host stack."""

import json
from pathlib import Path

import pytest

from controller.device import Device
from controller.link.transport import open_transport
from gateware.spec.protocol import StreamChannel
from hil.twin import Twin

pytestmark = pytest.mark.cocotb

VECTORS = Path(__file__).parents[1] / "vectors" / "link_session.json"


@pytest.fixture(scope="module")
def twin():
    with Twin() as running:
        yield running


def test_shared_vectors_over_tcp(twin):
    """The shared session through socket -> cocotb bridge -> UART pins -> gateware, byte exact."""
    transport = open_transport(twin.url, timeout=5.0)
    try:
        for step in json.loads(VECTORS.read_text())["steps"]:
            transport.write(bytes.fromhex(step["request"]))
            if step["reply"] is None:
                continue  # the next reply would be misattributed if this one were answered
            want = bytes.fromhex(step["reply"])
            got = b""
            while len(got) < len(want):
                chunk = transport.read(timeout=5.0)
                assert chunk, f"{step['note']}: no reply from the twin"
                got += chunk
            assert got == want, f"{step['note']}: got {got.hex()}"
    finally:
        transport.close()


def test_host_stack_against_twin(twin):
    with Device(twin.url, timeout=2.0) as dev:
        info = dev.info()
        assert info["role"] == "LINK" and info["clk_hz"] == 48_000_000
        dev.write("core.command", clear_counters=1)  # the vectors test left its errors counted
        dev.write("core.scratch", 0xA5A55A5A)
        assert dev.read("core.scratch") == 0xA5A55A5A
        dev.write("core.control", loopback=1)
        data = bytes(range(256)) * 2
        dev.link.stream_write(StreamChannel.LOOPBACK.value, data)
        assert dev.link.stream_read(StreamChannel.LOOPBACK.value, len(data), timeout=30) == data
        assert dev.read("link.crc_errors") == 0 and dev.read("link.uart_errors") == 0
