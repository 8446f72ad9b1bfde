"""The behavioural board's registers and common blocks (``hil.model`` puts them together).

``RegisterBank`` holds a register map's values with its access rules and the blocks' hooks;
``BlockModel`` is the behaviour of one block of the map and ``StreamChannelModel`` one stream
channel; ``CoreBlock`` (identity, clock counter, LOOPBACK) and ``LinkBlock`` (frame counters) are
on every board. Alice's and Bob's blocks are in ``hil.model_alice`` and ``hil.model_bob``.
"""

import functools
import subprocess
import time
from pathlib import Path

from gateware.spec.protocol import ErrorCode, StreamChannel
from gateware.spec.registers import DEVICE_ID, REGISTER_MAP, Access, Role

__all__ = ["CLK_HZ", "LOOPBACK_DEPTH", "git_hash_word", "RegisterBank", "StreamChannelModel", "QueuedChannel",
           "LoopbackChannel", "BlockModel", "CoreBlock", "LinkBlock"]

CLK_HZ = 48_000_000
LOOPBACK_DEPTH = 512


@functools.lru_cache(maxsize=None)
def git_hash_word(repo=None):
    """Return the first 8 hex digits of the repository's HEAD commit as an int, or 0."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        return int(out[:8], 16)
    except (OSError, subprocess.SubprocessError, ValueError):
        return 0


class RegisterBank:
    """The registers of a map: values, access rules, and per-register hooks from the blocks.

    ``on_read[path](index) -> int`` supplies a register's live value (RO registers driven by
    behaviour); ``on_write[path](value, index)`` is called after an RW register stored ``value`` or
    when a W1P register is written. Values are masked to the register's width.
    """

    def __init__(self, regmap=REGISTER_MAP):
        self.map = regmap
        self.values = {}
        self.on_read = {}
        self.on_write = {}
        self.reset()

    def reset(self):
        """Return every register to its reset value."""
        for info in self.map:
            for i in range(info.count):
                self.values[info.address + i] = info.init if info.access is not Access.W1P else 0

    def mapped(self, addr):
        """Return True if a register lives at word address ``addr``."""
        return self.map.at(addr) is not None

    def get(self, path, index=0):
        """Return the stored value of register ``path`` (no hooks)."""
        return self.values[self.map.address(path, index)]

    def set(self, path, value, index=0):
        """Store ``value`` in register ``path`` as the gateware drives it (no access check)."""
        info = self.map[path]
        self.values[self.map.address(path, index)] = value & ((1 << info.width) - 1)

    def read(self, addr):
        """Return the value the host reads at ``addr`` (which must be mapped)."""
        info, index = self.map.at(addr)
        if info.access is Access.W1P:
            return 0
        hook = self.on_read.get(info.path)
        value = hook(index) if hook else self.values[addr]
        return value & ((1 << info.width) - 1)

    def write(self, addr, value):
        """Apply a host write at mapped ``addr``; return ErrorCode.READ_ONLY or None."""
        info, index = self.map.at(addr)
        if info.access is Access.RO:
            return ErrorCode.READ_ONLY
        value &= (1 << info.width) - 1
        if info.access is Access.RW:
            self.values[addr] = value
        hook = self.on_write.get(info.path)
        if hook:
            hook(value, index)
        return None


class StreamChannelModel:
    """One stream channel of the board. Subclasses implement what their block does with it."""

    channel = None

    def enabled(self):
        """Return True if the channel takes host-to-device data now."""
        return False

    def free(self):
        """Return the bytes of room for host-to-device data."""
        return 0

    def put(self, data):
        """Take host-to-device ``data`` (the caller checked ``free()``)."""
        raise NotImplementedError

    def pull(self, limit):
        """Return up to ``limit`` bytes to send device-to-host now (b"" if none)."""
        return b""

    def reset(self):
        """Empty the channel's buffers."""


class QueuedChannel(StreamChannelModel):
    """A device-to-host channel that sends what its block appended to ``queue``, in order."""

    def __init__(self):
        self.queue = bytearray()

    def pull(self, limit):
        out = bytes(self.queue[:limit])
        del self.queue[:len(out)]
        return out

    def reset(self):
        self.queue.clear()


class LoopbackChannel(QueuedChannel):
    """LOOPBACK: host-to-device bytes come back unchanged; a FIFO of ``depth`` bytes."""

    channel = StreamChannel.LOOPBACK.value

    def __init__(self, bank, depth=LOOPBACK_DEPTH):
        super().__init__()
        self.bank = bank
        self.depth = depth

    def enabled(self):
        return bool(self.bank.get("core.control") & 1)

    def free(self):
        return self.depth - len(self.queue)

    def put(self, data):
        self.queue += data


class BlockModel:
    """Behaviour of one block of the register map: hooks into the bank, stream channels."""

    name = None

    def __init__(self, board):
        self.board = board
        self.bank = board.bank

    def channels(self):
        """Return the StreamChannelModel objects this block serves."""
        return []

    def reset(self):
        """Return the block's own state to reset."""


class CoreBlock(BlockModel):
    """``core``: identity, version, clock counter, control, command and status."""

    name = "core"

    def __init__(self, board, *, device_id=DEVICE_ID, version=None, git_hash=None,
                 clk_hz=CLK_HZ, loopback_depth=LOOPBACK_DEPTH):
        super().__init__(board)
        self.device_id = device_id
        self.version = REGISTER_MAP["core.version"].init if version is None else version
        self.git_hash = git_hash_word() if git_hash is None else git_hash
        self.clk_hz = clk_hz
        self.loopback = LoopbackChannel(self.bank, loopback_depth)
        self._t0 = time.monotonic()
        self.bank.on_read["core.cycles"] = self._cycles
        self.bank.on_read["core.status"] = lambda index: self.loopback.free()
        self.bank.on_write["core.command"] = self._command
        self.reset()

    def reset(self):
        platform = REGISTER_MAP["core.platform"].layout.const(
            {"role": Role.LINK, "channels": 1, "dirty": 0}).as_value().value
        self.bank.set("core.id", self.device_id)
        self.bank.set("core.version", self.version)
        self.bank.set("core.git_hash", self.git_hash)
        self.bank.set("core.platform", platform)
        self.bank.set("core.clk_hz", self.clk_hz)
        self.loopback.reset()
        self._t0 = time.monotonic()

    def channels(self):
        return [self.loopback]

    def _cycles(self, index):
        return int((time.monotonic() - self._t0) * self.clk_hz) & 0xFFFF_FFFF

    def _command(self, value, index):
        if value & 1:
            self.board.link.clear()


class LinkBlock(BlockModel):
    """``link``: the frame counters; ``count(name)`` bumps one, ``clear()`` zeroes them all."""

    name = "link"
    COUNTERS = ("rx_frames", "tx_frames", "crc_errors", "cobs_errors", "uart_errors", "bad_requests")

    def count(self, name, n=1):
        """Add ``n`` to counter ``link.<name>`` (wrapping at 32 bits)."""
        path = f"link.{name}"
        self.bank.set(path, self.bank.get(path) + n)

    def clear(self):
        """Zero every counter of the block."""
        for name in self.COUNTERS:
            self.bank.set(f"link.{name}", 0)

    reset = clear
