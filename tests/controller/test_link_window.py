"""Windowed host-to-device streaming (``LinkClient.stream_write``) against the behavioural board
over TCP: in order, exactly once, bounded by the room the board reports, and recovered correctly
when frames or replies are lost (whole frames, or bytes dropped and corrupted with a seed)."""

import random

import numpy as np
import pytest

from controller.link.client import STREAM_CHUNK, LinkClient
from controller.link.codec import FrameDecoder, decode_frame
from controller.link.errors import (
    DeviceError, LinkError, NoResponse, StreamOrderError, StreamStalled, StreamUncertain,
)
from controller.link.transport import Transport, open_transport
from gateware.spec.protocol import Opcode, StreamChannel, reply_opcode
from gateware.spec.registers import REGISTER_MAP, Role
from hil.model import ModelBoard, ModelServer

TIMEOUT = 0.1
CHOICES = StreamChannel.CHOICES
H2D = Opcode.STREAM_H2D.value
H2D_REPLY = reply_opcode(Opcode.STREAM_H2D).value


class Wrapped(Transport):
    """A transport that passes everything to ``inner``; subclasses alter the bytes."""

    def __init__(self, inner):
        super().__init__(None, inner.url, inner.baudrate)
        self.inner = inner

    def write(self, data):
        self.inner.write(data)

    def read(self, timeout):
        return self.inner.read(timeout)

    def discard_input(self):
        self.inner.discard_input()

    def close(self):
        self.inner.close()


class CreditChecker(Wrapped):
    """Check, on the host's clean bytes, that the STREAM_H2D data in flight never exceeds the room
    the board last reported: at each send, the data of every frame sent after the newest answered
    one fits in the room that answer reported. Records the most frames ever unanswered."""

    def __init__(self, inner):
        super().__init__(inner)
        self.sent = []          # [seq, data length] in send order
        self.newest = -1        # index in sent of the newest answered frame
        self.free = None
        self.max_unanswered = 0
        self.decoder = FrameDecoder()
        self.violations = []

    def write(self, data):
        frame = decode_frame(data[:-1])
        if frame.opcode == H2D and len(frame.payload) > 1:
            self.sent.append([frame.seq, len(frame.payload) - 1])
            ahead = sum(n for _, n in self.sent[self.newest + 1:])
            if self.free is not None and ahead > self.free:
                self.violations.append((len(self.sent) - 1, ahead, self.free))
            self.max_unanswered = max(self.max_unanswered, len(self.sent) - 1 - self.newest)
        super().write(data)

    def read(self, timeout):
        data = super().read(timeout)
        for frame in self.decoder.feed(data):
            if frame.opcode == H2D_REPLY:
                for i in range(len(self.sent) - 1, self.newest, -1):
                    if self.sent[i][0] == frame.seq:
                        self.newest, self.free = i, int.from_bytes(frame.payload[3:5], "big")
                        break
        return data


class Lossy(Wrapped):
    """Drop or corrupt (one bit flipped) each byte, both ways, with probability ``p``; seeded."""

    def __init__(self, inner, seed, p):
        super().__init__(inner)
        # one generator per direction: what happens to the n-th byte sent does not depend on
        # how the replies interleave with the requests in time
        self.tx_rng, self.rx_rng = random.Random(2 * seed), random.Random(2 * seed + 1)
        self.p = p
        self.active = False
        self.hits = 0

    def _damage(self, data, rng):
        if not self.active:
            return data
        out = bytearray()
        for b in data:
            if rng.random() < self.p:
                self.hits += 1
                if rng.random() < 0.5:
                    continue
                b ^= 1 << rng.randrange(8)
            out.append(b)
        return bytes(out)

    def write(self, data):
        super().write(self._damage(data, self.tx_rng))

    def read(self, timeout):
        return self._damage(super().read(timeout), self.rx_rng)


class FrameDropper(Wrapped):
    """Drop whole STREAM_H2D frames (``drop_tx``: indices among those sent with data), whole
    STREAM_H2D replies (``drop_rx``: indices among those received), and with ``mute_after`` every
    frame after that many STREAM_H2D replies."""

    def __init__(self, inner, drop_tx=(), drop_rx=(), mute_after=None):
        super().__init__(inner)
        self.mute_after = mute_after
        self.drop_tx, self.drop_rx = set(drop_tx), set(drop_rx)
        self.tx_index = self.rx_index = 0
        self.buf = b""

    def write(self, data):
        frame = decode_frame(data[:-1])
        if frame.opcode == H2D and len(frame.payload) > 1:
            self.tx_index += 1
            if self.tx_index - 1 in self.drop_tx:
                return
        super().write(data)

    def read(self, timeout):
        self.buf += super().read(timeout)
        *whole, self.buf = self.buf.split(b"\x00")
        out = []
        for raw in whole:
            try:
                frame = decode_frame(raw)
            except ValueError:
                frame = None
            if frame is not None and frame.opcode == H2D_REPLY:
                self.rx_index += 1
                if self.rx_index - 1 in self.drop_rx:
                    continue
            if self.mute_after is not None and self.rx_index > self.mute_after:
                continue
            out.append(raw + b"\x00")
        return b"".join(out)


@pytest.fixture
def alice_board():
    """An Alice model board on TCP with a 60 000-byte choice FIFO that is not played (no run)."""
    with ModelServer(ModelBoard(role=Role.ALICE, alice_options={"choices_depth": 60_000})) as s:
        yield s


def _client(server, wrap=lambda t: t, **options):
    transport = wrap(open_transport(server.url, timeout=TIMEOUT))
    return LinkClient(transport, timeout=TIMEOUT, retries=3, first_seq=0, **options)


def _took(server):
    return bytes(server.board.alice.fifo)


def _joined(data, ranges):
    return b"".join(data[o:o + n] for o, n in ranges)


def test_window_streams_in_order_with_frames_in_flight(alice_board):
    data = random.Random(1).randbytes(40_000)
    checker = None

    def wrap(t):
        nonlocal checker
        checker = CreditChecker(t)
        return checker
    with _client(alice_board, wrap, window=8) as c:
        ranges = c.stream_write(CHOICES, data)
        assert _took(alice_board) == data
        assert ranges == [(o, min(STREAM_CHUNK, len(data) - o)) for o in range(0, len(data), STREAM_CHUNK)]
        s = c.stats
        assert s.stream_frames == len(ranges) and s.stream_bytes == len(data)
        assert s.retries == s.stream_recoveries == s.stale_frames == 0
        assert s.window_stalls > 0
    assert checker.max_unanswered == 8 and not checker.violations
    assert alice_board.board.bank.get("link.bad_requests") == 0


def test_window_one_is_one_request_at_a_time(alice_board):
    data = random.Random(2).randbytes(5_000)
    checker = None

    def wrap(t):
        nonlocal checker
        checker = CreditChecker(t)
        return checker
    with _client(alice_board, wrap, window=1) as c:
        c.stream_write(CHOICES, data)
    assert _took(alice_board) == data and checker.max_unanswered == 1


def test_window_is_bounded_by_the_reported_room(model_factory):
    """A 1000-byte FIFO nobody drains: the window stops at the room, nothing is refused."""
    server = model_factory(role=Role.ALICE, alice_options={"choices_depth": 1000})
    checker = None

    def wrap(t):
        nonlocal checker
        checker = CreditChecker(t)
        return checker
    data = random.Random(3).randbytes(3000)
    with _client(server, wrap, window=8) as c:
        assert c.stream_query(CHOICES) == 1000
        with pytest.raises(StreamStalled, match="1000 of 3000 bytes sent"):
            c.stream_write(CHOICES, data, stall_timeout=0.2)
        assert c.stats.room_stalls > 0
    assert bytes(server.board.alice.fifo) == data[:1000]
    assert not checker.violations and checker.max_unanswered >= 4
    assert server.board.bank.get("link.bad_requests") == 0   # no STREAM_FULL


def test_loopback_window_never_overruns_the_512_byte_fifo(model):
    data = random.Random(4).randbytes(20_000)
    checker = None

    def wrap(t):
        nonlocal checker
        checker = CreditChecker(t)
        return checker
    with _client(model, wrap, window=8) as c:
        c.write(REGISTER_MAP.address("core.control"), 1)   # loopback on
        c.stream_write(StreamChannel.LOOPBACK, data, stall_timeout=5)
        assert c.stream_read(StreamChannel.LOOPBACK, len(data), timeout=5) == data
    assert not checker.violations and 2 <= checker.max_unanswered <= 3   # 247 + 247 + 18
    assert model.board.bank.get("link.bad_requests") == 0


@pytest.mark.parametrize("drop_rx", [{0}, {3}, {3, 4}, {2, 5}])
def test_lost_replies_are_settled_by_the_frame_count(alice_board, drop_rx):
    """Replies lost mid-window: the frames were applied; nothing is sent twice, order holds."""
    data = random.Random(5).randbytes(12 * STREAM_CHUNK)
    with _client(alice_board, lambda t: FrameDropper(t, drop_rx=drop_rx), window=8) as c:
        c.stream_write(CHOICES, data)
        assert c.stats.stream_recoveries >= 1
    assert _took(alice_board) == data


def test_lost_newest_frame_is_retried_unchanged(alice_board):
    data = random.Random(6).randbytes(3 * STREAM_CHUNK)
    with _client(alice_board, lambda t: FrameDropper(t, drop_tx={2}), window=8) as c:
        c.stream_write(CHOICES, data)
        assert c.stats.retries == 1 and c.stats.stream_recoveries == 1
    assert _took(alice_board) == data


def test_lost_reply_of_newest_frame_is_not_applied_twice(alice_board):
    data = random.Random(7).randbytes(3 * STREAM_CHUNK)
    with _client(alice_board, lambda t: FrameDropper(t, drop_rx={2}), window=8) as c:
        c.stream_write(CHOICES, data)
        assert c.stats.retries == 1
    assert _took(alice_board) == data


def test_frame_lost_mid_window_is_an_order_error(alice_board):
    """The board took frames 3.. before the lost frame 2: a typed error that says so exactly."""
    data = random.Random(8).randbytes(8 * STREAM_CHUNK)
    with _client(alice_board, lambda t: FrameDropper(t, drop_tx={2}), window=8) as c:
        with pytest.raises(StreamOrderError, match="out of order") as err:
            c.stream_write(CHOICES, data)
    e = err.value
    assert e.missing == [(2 * STREAM_CHUNK, STREAM_CHUNK)]
    assert _took(alice_board) == _joined(data, e.delivered)
    assert isinstance(e, LinkError)


def test_frame_lost_mid_window_with_reorder_is_sent_later(alice_board):
    data = random.Random(9).randbytes(8 * STREAM_CHUNK)
    with _client(alice_board, lambda t: FrameDropper(t, drop_tx={2}), window=8) as c:
        ranges = c.stream_write(CHOICES, data, reorder=True)
        assert c.stats.stream_reordered == 1
    assert ranges[-1] == (2 * STREAM_CHUNK, STREAM_CHUNK)
    assert sorted(ranges) == [(o, STREAM_CHUNK) for o in range(0, len(data), STREAM_CHUNK)]
    assert _took(alice_board) == _joined(data, ranges)


SEEDS = range(16)


@pytest.mark.parametrize("reorder, p", [(False, 2e-5), (True, 1e-4)])
def test_lossy_link_every_byte_once(alice_board, reorder, p):
    """Bytes dropped and corrupted both ways (probability ``p`` per byte, seeded): each write either
    delivers every byte exactly once (in order, or in the order it returns with ``reorder``), or
    raises a typed error whose ranges are exactly what the board holds."""
    outcomes = {"clean": 0, "recovered": 0, "order": 0, "uncertain": 0}
    for seed in SEEDS:
        alice_board.board.reset()
        data = random.Random(100 + seed).randbytes(30_000)
        lossy = None

        def wrap(t):
            nonlocal lossy
            lossy = Lossy(t, seed, p)
            return lossy
        with _client(alice_board, wrap, window=8) as c:
            c.read(0)                                         # a clean start
            lossy.active = True
            try:
                ranges = c.stream_write(CHOICES, data, reorder=reorder)
            except StreamOrderError as exc:
                assert not reorder, f"seed {seed}"
                assert _took(alice_board) == _joined(data, exc.delivered), f"seed {seed}"
                outcomes["order"] += 1
                continue
            except StreamUncertain as exc:
                assert _took(alice_board).startswith(_joined(data, exc.delivered)), f"seed {seed}"
                outcomes["uncertain"] += 1
                continue
            except NoResponse:
                pytest.fail(f"seed {seed}: the link gave up at a loss rate it should survive")
            assert sorted(ranges) == [(o, min(STREAM_CHUNK, len(data) - o))
                                      for o in range(0, len(data), STREAM_CHUNK)], f"seed {seed}"
            if not reorder:
                assert [o for o, _ in ranges] == sorted(o for o, _ in ranges), f"seed {seed}"
            assert _took(alice_board) == _joined(data, ranges), f"seed {seed}"
            outcomes["recovered" if c.stats.stream_recoveries else "clean"] += 1
    print(outcomes)
    assert outcomes["uncertain"] <= 2, outcomes
    if reorder:      # the loss hit, and was recovered
        assert outcomes["recovered"] >= 12, outcomes
    else:            # a request lost mid-window reorders the board's FIFO: reported, exactly
        assert outcomes["order"] >= 3 and outcomes["clean"] + outcomes["recovered"] >= 3, outcomes


def test_dead_link_mid_stream_raises_no_response(alice_board):
    data = random.Random(10).randbytes(10 * STREAM_CHUNK)
    with _client(alice_board, lambda t: FrameDropper(t, drop_tx=set(range(5, 100)))) as c:
        with pytest.raises((NoResponse, StreamUncertain, StreamOrderError)):
            c.stream_write(CHOICES, data)
    alice_board.board.reset()
    with _client(alice_board, lambda t: FrameDropper(t, drop_rx=set(range(5, 100)))) as c:
        c.stream_write(CHOICES, data)        # every reply lost, every frame settled by count
        assert c.stats.stream_recoveries >= 1 and c.stats.retries == 0
    assert _took(alice_board) == data
    alice_board.board.reset()
    with _client(alice_board, lambda t: FrameDropper(t, mute_after=5)) as c:
        with pytest.raises(NoResponse, match="no reply"):
            c.stream_write(CHOICES, data)


def test_bad_channel_is_a_device_error(alice_board):
    with _client(alice_board) as c:
        with pytest.raises(DeviceError, match="BAD_CHANNEL"):
            c.stream_write(StreamChannel.LOOPBACK, bytes(1000))


def test_window_must_be_positive(alice_board):
    with pytest.raises(ValueError, match="window 0"):
        _client(alice_board, window=0)


def test_alice_record_follows_the_fifo_when_a_frame_is_lost(alice_board):
    """Alice's feeder streams with ``reorder``: a frame lost mid-window reaches the FIFO late,
    and her record of choices follows the FIFO's order, slot for slot."""
    from controller.alice import AliceFeeder, ChoiceSampler, unpack_choices
    from controller.device import Device

    class Seeded:
        def __init__(self, seed):
            self.rng = random.Random(seed)

        def read(self, n):
            return self.rng.randbytes(n)

    link = _client(alice_board, lambda t: FrameDropper(t, drop_tx={3}), window=8)
    with Device(link) as dev:
        feeder = AliceFeeder(dev, ChoiceSampler(), Seeded(11), chunk=20_000)
        feeder.configure()
        assert feeder.pump() == 20_000
        assert dev.link.stats.stream_reordered == 1
    record = feeder.record._arrays()
    played = unpack_choices(_took(alice_board))
    for name, got, want in zip(("bit", "basis", "intensity"), played, record):
        assert np.array_equal(got, want), name


def test_room_is_forgotten_after_a_failed_write(model_factory):
    """After a write fails part-way, the client does not trust the room it knew before it: the
    next write learns the room afresh and nothing is refused."""
    server = model_factory(role=Role.ALICE, alice_options={"choices_depth": 2000})
    dropper = None

    def wrap(t):
        nonlocal dropper
        dropper = FrameDropper(t, drop_tx={1})
        return dropper
    with _client(server, wrap, window=8) as c:
        assert c.stream_query(CHOICES) == 2000
        with pytest.raises(StreamOrderError):
            c.stream_write(CHOICES, bytes(1500))       # frame 1 lost: 1253 bytes taken
        with pytest.raises(StreamStalled, match="747 of 1000 bytes sent"):
            c.stream_write(CHOICES, bytes(1000), stall_timeout=0.2)   # 747 bytes of room left
    assert server.board.bank.get("link.bad_requests") == 0   # no STREAM_FULL
    assert len(server.board.alice.fifo) == 2000
