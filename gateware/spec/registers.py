"""The register map: every register the host can reach, defined once.

Registers are 32-bit words at 16-bit word addresses. Addresses are assigned here by position
within a block (``Block.base`` + index), never written by hand elsewhere: the gateware's register
bank (``gateware.cores.csr``) is built from this map, the host (``controller.device``) reads and
writes by name, and ``docs/protocol.md`` is generated from it.

Register shapes are ``amaranth.lib.data`` layouts (or plain widths), so the gateware drives fields
by name and the host decodes a read value with ``layout.from_bits(value)``.
"""

from amaranth.lib import data, enum

from .protocol import PROTOCOL_VERSION
from .registers_base import Access, Register, Block, RegisterInfo, RegisterMap
from .tagger import TAGGER_BLOCK
from .modulator import MODULATOR_BLOCK

__all__ = [
    "DEVICE_ID", "GATEWARE_VERSION", "Access", "Role",
    "Register", "Block", "RegisterMap", "REGISTER_MAP", "ROLE_BLOCKS", "role_register_map",
    "VersionLayout", "ControlLayout", "CommandLayout", "StatusLayout",
]

#: Value of ``core.id``: ASCII "QKDN". The host refuses to talk to anything else.
DEVICE_ID = 0x514B444E

#: Gateware release (major, minor, patch). The host accepts gateware with the same major.
GATEWARE_VERSION = (0, 1, 0)


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
    TAGGER_BLOCK,
    MODULATOR_BLOCK,
])


#: The blocks each role's image serves; the others read as unmapped (BAD_ADDRESS), so an image
#: carries no logic for another role's registers.
ROLE_BLOCKS = {
    Role.LINK: ("core", "link"),
    Role.ALICE: ("core", "link", "modulator"),
    Role.BOB: ("core", "link", "tagger"),
}


def role_register_map(role):
    """Return the register map of the ``role`` image (same addresses as ``REGISTER_MAP``)."""
    return REGISTER_MAP.subset(ROLE_BLOCKS[Role(role)])
