"""LinkClient and Device against the behavioural board over a real TCP socket, and every error path."""

import socket
import threading

import pytest

from controller.device import Device
from controller.link.client import STREAM_CHUNK, LinkClient
from controller.link.codec import encode_frame
from controller.link.errors import (
    CRCErrors, DeviceError, LinkError, NoResponse, StreamStalled, TransportError, VersionMismatch,
    WrongDevice,
)
from gateware.spec.protocol import MAX_BURST, ErrorCode, Opcode, StreamChannel
from gateware.spec.registers import DEVICE_ID, GATEWARE_VERSION, REGISTER_MAP, VersionLayout

#: Reply timeout, in seconds: short, the model answers in well under 1 ms.
TIMEOUT = 0.2

ADDR = REGISTER_MAP.address
LOOPBACK = StreamChannel.LOOPBACK


@pytest.fixture
def client(model):
    with LinkClient(model.url, timeout=TIMEOUT, retries=2, first_seq=0) as c:
        yield c


@pytest.fixture
def dev(model):
    with Device(model.url, timeout=TIMEOUT, retries=2) as d:
        yield d


def test_read_id_and_scratch(client):
    assert client.read(ADDR("core.id")) == DEVICE_ID
    assert client.read(ADDR("core.scratch")) == 0
    client.write(ADDR("core.scratch"), 0xA5A5_0F0F)
    assert client.read(ADDR("core.scratch")) == 0xA5A5_0F0F
    assert client.stats.retries == 0 and client.crc_errors == 0


def test_burst_read_and_split(client):
    values = client.burst_read(ADDR("core.id"), 2)
    assert values == [DEVICE_ID, REGISTER_MAP["core.version"].init]
    with pytest.raises(DeviceError) as err:
        client.burst_read(0, MAX_BURST + 5)     # split in two bursts; the first runs off the map
    assert err.value.code_name == "BAD_ADDRESS"


def test_sequence_numbers_advance_and_wrap(model):
    with LinkClient(model.url, timeout=TIMEOUT, first_seq=254) as c:
        for _ in range(4):
            assert c.read(ADDR("core.id")) == DEVICE_ID
        assert c._seq == 2


def test_device_error_is_decoded(client):
    with pytest.raises(DeviceError) as err:
        client.write(ADDR("core.id"), 1)
    e = err.value
    assert (e.code, e.code_name, e.detail, e.request_opcode) == (ErrorCode.READ_ONLY.value, "READ_ONLY",
                                                                  ADDR("core.id"), Opcode.WRITE.value)
    assert "READ_ONLY" in str(e) and "WRITE 0x0000" in str(e)
    with pytest.raises(DeviceError, match="BAD_CHANNEL"):
        client.stream_write(LOOPBACK, b"x")
    assert isinstance(e, LinkError)


def test_loopback_stream_in_and_out(dev):
    dev.write("core.control", loopback=1)
    data = bytes(range(256)) * 12 + b"tail"
    dev.link.stream_write(LOOPBACK, data)
    assert dev.link.stream_read(LOOPBACK, len(data), timeout=2) == data
    assert dev.link.stats.stream_gaps == {}


def test_stream_honours_free_space(model):
    """With the board's streams held, a 512-byte FIFO fills; the client waits, then finishes."""
    with Device(model.url, timeout=TIMEOUT, retries=2) as dev:
        dev.write("core.control", loopback=1)
        assert dev.fields("core.status")["loopback_free"] == 512
        model.board.hold_streams.set()
        data = bytes(i * 7 & 0xFF for i in range(700))
        resume = threading.Timer(0.1, model.board.hold_streams.clear)
        resume.start()
        dev.link.stream_write(LOOPBACK, data, stall_timeout=5)
        resume.join()
        assert dev.link.stream_read(LOOPBACK, len(data), timeout=2) == data


def test_stream_full_stalls_with_a_clear_error(model):
    with Device(model.url, timeout=TIMEOUT, retries=1) as dev:
        dev.write("core.control", loopback=1)
        model.board.hold_streams.set()
        with pytest.raises(StreamStalled, match="512 of 600 bytes sent.*FIFO stays full"):
            dev.link.stream_write(LOOPBACK, bytes(600), stall_timeout=0.05)
        assert dev.link.stream_query(LOOPBACK) == 0


def test_lost_stream_frame_shows_as_a_gap(model):
    """A corrupted device-to-host frame is dropped; the client counts the gap in its sequence."""
    with Device(model.url, timeout=TIMEOUT) as dev:
        dev.write("core.control", loopback=1)
        dev.link.stream_write(LOOPBACK, b"first")
        assert dev.link.stream_read(LOOPBACK, 5, timeout=2) == b"first"
        model.board.hold_streams.set()
        data = bytes(range(256)) + bytes(range(200))           # two stream frames' worth
        dev.link.stream_write(LOOPBACK, data)
        model.board.corrupt_stream_frames = 1
        model.board.hold_streams.clear()
        got = dev.link.stream_read(LOOPBACK, len(data) - STREAM_CHUNK, timeout=2)
        assert got == data[STREAM_CHUNK:]
        dev.link.stream_write(LOOPBACK, b"more")
        assert dev.link.stream_read(LOOPBACK, 4, timeout=2) == b"more"
        assert dev.link.stats.stream_gaps[0] == 1 and dev.link.stats.stream_lost_frames[0] == 1
        assert dev.link.crc_errors == 1


def test_corrupt_replies_are_retried(model_factory):
    server = model_factory(corrupt_replies=2)
    with LinkClient(server.url, timeout=0.05, retries=3) as c:
        c.write(ADDR("core.scratch"), 0x1234)      # reply corrupted twice; the retries are deduped
        assert c.read(ADDR("core.scratch")) == 0x1234
        assert c.stats.retries == 2 and c.crc_errors == 2
    assert server.board.bank.get("link.rx_frames") == 4


def test_too_many_corrupt_replies_raise_crc_errors(model_factory):
    server = model_factory(corrupt_replies=10)
    with LinkClient(server.url, timeout=0.05, retries=2) as c:
        with pytest.raises(CRCErrors, match="baud rate") as err:
            c.read(ADDR("core.id"))
    assert err.value.corrupt == 3 and err.value.attempts == 3


def test_retried_write_is_not_executed_twice(model):
    """A W1P command sent twice with identical bytes clears the counters once."""
    wire = encode_frame(Opcode.WRITE.value, 77, ADDR("core.command").to_bytes(2, "big") + b"\x00\x00\x00\x01")
    with socket.create_connection((model.host, model.port), timeout=2) as sock:
        sock.sendall(wire)
        first = sock.recv(64)
        sock.sendall(encode_frame(Opcode.READ.value, 78, ADDR("core.scratch").to_bytes(2, "big")))
        sock.recv(64)
        sock.sendall(wire)     # not the very next request: executed again
        sock.recv(64)
        sock.sendall(wire)     # the very next: a retry, answered, not executed
        again = sock.recv(64)
    assert first == again
    board = model.board.bank
    # The second clear zeroed the counters after counting its own frame; then the retry counted
    # in rx_frames, and both replies in tx_frames (executed again, tx_frames would be 1).
    assert board.get("link.rx_frames") == 1
    assert board.get("link.tx_frames") == 2


def test_no_response_from_silent_server(silent_server):
    with LinkClient(silent_server, timeout=0.05, retries=2) as c:
        with pytest.raises(NoResponse) as err:
            c.read(0)
    msg = str(err.value)
    assert silent_server in msg and "3 attempt(s)" in msg and "0.05 s" in msg
    assert "powered" in msg and "baud" in msg and "port" in msg


def test_wrong_device(model_factory):
    server = model_factory(device_id=0x41424344)
    with pytest.raises(WrongDevice, match=r"0x41424344 \(ABCD\)"):
        Device(server.url, timeout=TIMEOUT)


@pytest.mark.parametrize("major, protocol", [(GATEWARE_VERSION[0] + 1, 1), (GATEWARE_VERSION[0], 2)])
def test_version_mismatch(model_factory, major, protocol):
    word = VersionLayout.const({"major": major, "minor": 0, "patch": 0, "protocol": protocol}).as_value().value
    server = model_factory(version=word)
    with pytest.raises(VersionMismatch, match="qkdnode flash"):
        Device(server.url, timeout=TIMEOUT)


def test_minor_version_difference_is_accepted(model_factory):
    word = VersionLayout.const({"major": GATEWARE_VERSION[0], "minor": 9, "patch": 3,
                                "protocol": 1}).as_value().value
    server = model_factory(version=word)
    with Device(server.url, timeout=TIMEOUT) as dev:
        assert dev.info()["version"] == f"{GATEWARE_VERSION[0]}.9.3"


def test_bad_url():
    with pytest.raises(TransportError, match="socket://HOST:PORT"):
        LinkClient("ftp://nowhere")


def test_new_connection_replaces_old(model):
    with LinkClient(model.url, timeout=TIMEOUT) as a:
        a.write(ADDR("core.scratch"), 99)
        with LinkClient(model.url, timeout=TIMEOUT) as b:
            assert b.read(ADDR("core.scratch")) == 99
            assert b.read(ADDR("core.scratch")) == 99


def test_device_by_name(dev):
    assert dev.read("core.id") == DEVICE_ID
    dev.write("core.scratch", 5)
    assert dev.read("core.scratch") == 5
    dev.write("core.control", loopback=1, led=1)
    dev.update("core.control", led=0)
    assert dev.fields("core.control") == {"loopback": 1, "led": 0}
    assert dev.fields("core.version")["protocol"] == 1
    regs = dev.burst_read("core.id", "core.version")
    assert list(regs) == ["core.id", "core.version"]
    assert set(dev.read_block("link")) == {f"link.{n}" for n in
                                           ("rx_frames", "tx_frames", "crc_errors", "cobs_errors",
                                            "uart_errors", "bad_requests")}
    dev.write("core.command", clear_counters=1)
    assert dev.read("link.bad_requests") == 0
    info = dev.info()
    assert info["id"] == "0x514B444E" and info["role"] == "LINK" and info["clk_hz"] == 48_000_000
    assert info["version"] == ".".join(map(str, GATEWARE_VERSION))
    c1 = dev.read("core.cycles")
    assert isinstance(c1, int)


def test_device_refuses_bad_names_and_values(dev):
    with pytest.raises(KeyError, match="registers are"):
        dev.read("core.nothing")
    with pytest.raises(KeyError, match="block.register"):
        dev.read("scratch")
    with pytest.raises(KeyError, match="fields are: loopback, led"):
        dev.write("core.control", lopback=1)
    with pytest.raises(ValueError, match="does not fit"):
        dev.write("core.control", led=2)
    with pytest.raises(PermissionError):
        dev.write("core.id", 0)
    with pytest.raises(TypeError):
        dev.fields("core.scratch")


def test_loop_transport_echoes_and_client_ignores_its_own_requests():
    """On loop:// the client hears its own request: not a reply, so it times out cleanly."""
    with LinkClient("loop://", timeout=0.02, retries=1) as c:
        with pytest.raises(NoResponse, match="loop://"):
            c.read(0)
        assert c.stats.stale_frames == 2 and c.stats.retries == 1
