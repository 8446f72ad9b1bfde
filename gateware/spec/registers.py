"""The register map: every register the host can reach, defined once.

Registers are 32-bit words at 16-bit word addresses. Addresses are assigned here by position
within a block (``Block.base`` + index), never written by hand elsewhere: the gateware's register
bank (``gateware.cores.csr``) is built from this map, the host (``controller.device``) reads and
writes by name, and ``docs/protocol.md`` is generated from it.

Register shapes are ``amaranth.lib.data`` layouts (or plain widths), so the gateware drives fields
by name and the host decodes a read value with ``layout.from_bits(value)``.
"""

from dataclasses import dataclass, field

from amaranth.lib import data, enum

from .protocol import PROTOCOL_VERSION

__all__ = [
    "DEVICE_ID", "GATEWARE_VERSION", "Access", "Role",
    "Register", "Block", "RegisterMap", "REGISTER_MAP",
    "VersionLayout", "ControlLayout", "CommandLayout", "StatusLayout",
]

#: Value of ``core.id``: ASCII "QKDN". The host refuses to talk to anything else.
DEVICE_ID = 0x514B444E

#: Gateware release (major, minor, patch). The host accepts gateware with the same major.
GATEWARE_VERSION = (0, 1, 0)


class Access(enum.Enum):
    """How the host may access a register."""
    #: Read-only: driven by the gateware; writes are refused with READ_ONLY.
    RO = "ro"
    #: Read-write: holds what the host wrote (from reset value ``init``).
    RW = "rw"
    #: Write-one-pulse: each 1 bit written is a one-cycle strobe; reads return 0.
    W1P = "w1p"


class Role(enum.Enum, shape=4):
    """What the gateware image does, read from ``core.platform``."""
    #: The link alone (control path bring-up, no quantum-channel cores).
    LINK = 0
    #: Transmitter: slot clock, choice FIFO, modulator outputs.
    ALICE = 1
    #: Receiver: detector time tagger.
    BOB = 2


VersionLayout = data.StructLayout({
    "patch": 8,
    "minor": 8,
    "major": 8,
    "protocol": 8,
})

PlatformLayout = data.StructLayout({
    "role": Role,
    #: Number of stream channels this image serves.
    "channels": 4,
    #: 1 when the image was built from a work tree with uncommitted changes.
    "dirty": 1,
})

ControlLayout = data.StructLayout({
    #: Enable the LOOPBACK stream channel (host->device bytes are sent back as device->host frames).
    "loopback": 1,
    #: Drive the board's user LED (bring-up aid).
    "led": 1,
})

CommandLayout = data.StructLayout({
    #: Zero every counter in the ``link`` block.
    "clear_counters": 1,
})

StatusLayout = data.StructLayout({
    #: Bytes of room in the LOOPBACK stream's FIFO.
    "loopback_free": 16,
})


@dataclass(frozen=True)
class Register:
    """One 32-bit register (or ``count`` consecutive ones sharing a name, read as ``name[i]``)."""
    name: str
    access: Access
    doc: str
    shape: object = 32
    init: int = 0
    count: int = 1

    @property
    def layout(self):
        """The register's layout, or None for a plain 32-bit number."""
        return self.shape if isinstance(self.shape, data.Layout) else None

    @property
    def width(self):
        """Significant bits; higher bits read as 0."""
        return data.Layout.cast(self.shape).size if self.layout else int(self.shape)


@dataclass(frozen=True)
class Block:
    """A group of registers from ``base`` up; ``span`` words are reserved for it."""
    name: str
    base: int
    span: int
    doc: str
    registers: tuple = field(default_factory=tuple)


@dataclass(frozen=True)
class RegisterInfo:
    """A register placed in the map: its full name ``block.register`` and word address."""
    path: str
    address: int
    block: Block
    register: Register

    def __getattr__(self, name):
        return getattr(self.register, name)


class RegisterMap:
    """Places blocks and registers at addresses and looks them up by name or address."""

    ADDRESS_WIDTH = 16

    def __init__(self, blocks):
        self.blocks = tuple(blocks)
        self._by_path = {}
        self._by_address = {}
        end = 0
        for block in self.blocks:
            if block.base < end:
                raise ValueError(f"block {block.name!r} at {block.base:#06x} overlaps the previous block")
            words = sum(reg.count for reg in block.registers)
            if words > block.span:
                raise ValueError(f"block {block.name!r} has {words} registers, more than its span {block.span}")
            end = block.base + block.span
            address = block.base
            for reg in block.registers:
                info = RegisterInfo(f"{block.name}.{reg.name}", address, block, reg)
                if info.path in self._by_path:
                    raise ValueError(f"register {info.path!r} is defined twice")
                self._by_path[info.path] = info
                for i in range(reg.count):
                    self._by_address[address + i] = (info, i)
                address += reg.count
        if end > 1 << self.ADDRESS_WIDTH:
            raise ValueError("register map does not fit 16-bit addresses")

    def __iter__(self):
        return iter(self._by_path.values())

    def __getitem__(self, path):
        """Return the RegisterInfo for ``"block.name"``; KeyError lists what exists."""
        try:
            return self._by_path[path]
        except KeyError:
            raise KeyError(f"no register {path!r}; registers are: {', '.join(self._by_path)}") from None

    def address(self, path, index=0):
        """Return the word address of register ``path`` (element ``index`` of an array)."""
        info = self[path]
        if not 0 <= index < info.count:
            raise IndexError(f"{path} has {info.count} element(s), index {index} is out of range")
        return info.address + index

    def at(self, address):
        """Return ``(RegisterInfo, index)`` at a word address, or None."""
        return self._by_address.get(address)

    def block(self, name):
        """Return the block called ``name``."""
        for block in self.blocks:
            if block.name == name:
                return block
        raise KeyError(f"no block {name!r}")


def _version_word():
    major, minor, patch = GATEWARE_VERSION
    return VersionLayout.const({"patch": patch, "minor": minor, "major": major,
                                "protocol": PROTOCOL_VERSION}).as_value().value


REGISTER_MAP = RegisterMap([
    Block("core", 0x0000, 0x0010, "Identity, version and global control of the image.", (
        Register("id", Access.RO, 'Device identity, ASCII "QKDN".', init=DEVICE_ID),
        Register("version", Access.RO, "Gateware release and wire-protocol version.",
                 VersionLayout, init=_version_word()),
        Register("git_hash", Access.RO, "First 8 hex digits of the gateware's git commit."),
        Register("platform", Access.RO, "Role of the image and what it serves.", PlatformLayout),
        Register("clk_hz", Access.RO, "System clock frequency, in Hz."),
        Register("cycles", Access.RO, "Free-running system clock cycle counter (wraps)."),
        Register("scratch", Access.RW, "Free for the host: link and bus tests."),
        Register("control", Access.RW, "Global enables.", ControlLayout),
        Register("command", Access.W1P, "One-shot commands.", CommandLayout),
        Register("status", Access.RO, "Global status.", StatusLayout),
    )),
    Block("link", 0x0010, 0x0010, "Frame counters of the host link; cleared by core.command.clear_counters.", (
        Register("rx_frames", Access.RO, "Frames received with a valid CRC; each gets one reply."),
        Register("tx_frames", Access.RO, "Frames sent (replies and stream frames)."),
        Register("crc_errors", Access.RO, "Frames dropped for a bad CRC (never executed)."),
        Register("cobs_errors", Access.RO, "Frames dropped for bad COBS framing, or too short or too long."),
        Register("uart_errors", Access.RO, "UART bytes lost: framing errors (bad stop bit) and receive overruns."),
        Register("bad_requests", Access.RO, "Valid frames answered with an ERROR reply."),
    )),
    Block("tagger", 0x0100, 0x0100, "Reserved for Bob's time tagger.", ()),
    Block("modulator", 0x0200, 0x0100, "Reserved for Alice's modulator.", ()),
])
