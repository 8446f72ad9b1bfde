"""The spec is consistent, and everything derived from it is current."""

from pathlib import Path

import pytest
from amaranth.lib import data

from gateware.spec import protocol
from gateware.spec.doc import render_protocol
from gateware.spec.protocol import Opcode, crc16, reply_opcode, MAX_FRAME, MAX_BURST, MAX_PAYLOAD
from gateware.spec.registers import REGISTER_MAP, RegisterMap, Block, Register, Access

DOC = Path(__file__).parents[2] / "docs" / "protocol.md"


def test_protocol_doc_is_current():
    assert DOC.read_text() == render_protocol(), \
        "docs/protocol.md is stale: run `qkdnode docs protocol --write docs/protocol.md`"


def test_crc_check_value():
    # The CRC catalogue's check value for CRC-16/CCITT-FALSE.
    assert crc16(b"123456789") == 0x29B1


def test_frame_limits_fit_one_cobs_block_and_burst():
    assert MAX_FRAME < 254
    assert 2 + 1 + 4 * MAX_BURST <= MAX_PAYLOAD


def test_replies_pair_with_requests():
    for op in (Opcode.READ, Opcode.WRITE, Opcode.BURST_READ, Opcode.STREAM_H2D):
        assert reply_opcode(op).value == op.value | 0x80


def test_register_addresses_unique_and_inside_blocks():
    seen = set()
    for info in REGISTER_MAP:
        for i in range(info.count):
            address = info.address + i
            assert address not in seen
            seen.add(address)
            assert info.block.base <= address < info.block.base + info.block.span
        if info.layout is not None:
            assert info.layout.size <= 32
        assert info.init < 1 << 32


def test_map_rejects_overlap_and_duplicates():
    with pytest.raises(ValueError, match="overlaps"):
        RegisterMap([Block("a", 0, 4, ""), Block("b", 2, 4, "")])
    with pytest.raises(ValueError, match="defined twice"):
        RegisterMap([Block("a", 0, 4, "", (Register("x", Access.RW, ""), Register("x", Access.RW, "")))])
    with pytest.raises(KeyError, match="no register 'core.nope'"):
        REGISTER_MAP["core.nope"]
