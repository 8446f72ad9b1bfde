"""Link stress: many register transactions, bursts and a loopback stream, with no error counted
on either side and every frame accounted for."""

import numpy as np
import pytest

from gateware.spec.protocol import StreamChannel

#: Loopback bytes per board and target (the RTL twin's UART runs at simulated speed).
STREAM_BYTES = {"model": 256 * 1024, "rtl": 3 * 1024, "hw": 1024 * 1024}
TRANSACTIONS = {"model": 2000, "rtl": 100, "hw": 5000}


@pytest.mark.parametrize("name", ["alice", "bob"])
def test_link_stress(bench, target, seed, name):
    dev = getattr(bench, name)
    rng = np.random.default_rng(seed + (name == "bob"))
    dev.write("core.command", clear_counters=1)
    crc0, cobs0 = dev.link.crc_errors, dev.link.cobs_errors
    n = TRANSACTIONS[target]
    for i in range(n):
        value = int(rng.integers(0, 2**32))
        dev.write("core.scratch", value)
        if i % 7 == 0:
            regs = dev.read_block("link")
            assert regs["link.crc_errors"] == 0, f"seed {seed}: {regs}"
        assert dev.read("core.scratch") == value, f"seed {seed}, transaction {i}"

    dev.write("core.control", loopback=1)
    data = rng.bytes(STREAM_BYTES[target])
    dev.link.stream_write(StreamChannel.LOOPBACK.value, data)
    echoed = dev.link.stream_read(StreamChannel.LOOPBACK.value, len(data), timeout=120)
    dev.write("core.control", loopback=0)
    assert echoed == data, f"seed {seed}: {len(echoed)} of {len(data)} loopback bytes back"

    regs = dev.read_block("link")
    for counter in ("crc_errors", "cobs_errors", "uart_errors", "bad_requests"):
        assert regs[f"link.{counter}"] == 0, f"{name}: link.{counter} = {regs[f'link.{counter}']}"
    assert dev.link.crc_errors == crc0 and dev.link.cobs_errors == cobs0, "the host saw bad frames"
    # every request since the clear was a frame the board counted (the clear's own included)
    assert regs["link.rx_frames"] >= 2 * n + 2
