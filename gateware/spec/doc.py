"""Render ``docs/protocol.md`` from the spec, so the document cannot drift from the code.

``qkdnode docs protocol --write docs/protocol.md`` regenerates it; a test fails when it is stale.
"""

import inspect

from amaranth.lib import data

from . import protocol
from .protocol import Opcode, ErrorCode, StreamChannel
from .registers import REGISTER_MAP, DEVICE_ID, GATEWARE_VERSION, Access
from . import tagger

__all__ = ["render_protocol"]


def _doc_lines(enum_cls):
    """Map member name -> the ``#:`` comment above it in the enum's source."""
    out, pending = {}, []
    for line in inspect.getsource(enum_cls).splitlines():
        line = line.strip()
        if line.startswith("#:"):
            pending.append(line[2:].strip())
        elif "=" in line and pending:
            out[line.split("=")[0].strip()] = " ".join(pending)
            pending = []
        else:
            pending = []
    return out


def _enum_table(enum_cls, value_fmt="0x{:02X}"):
    docs = _doc_lines(enum_cls)
    rows = ["| name | value | meaning |", "|---|---|---|"]
    for member in enum_cls:
        rows.append(f"| `{member.name}` | {value_fmt.format(member.value)} | {docs.get(member.name, '')} |")
    return "\n".join(rows)


def _fields(layout):
    if not isinstance(layout, data.StructLayout):
        return ""
    parts = []
    for name, fld in layout:
        width = data.Layout.cast(fld.shape).size if isinstance(fld.shape, data.Layout) else \
            fld.width
        bits = f"{fld.offset}" if width == 1 else f"{fld.offset + width - 1}:{fld.offset}"
        parts.append(f"`{name}`[{bits}]")
    return ", ".join(parts)


def _register_tables():
    out = []
    for block in REGISTER_MAP.blocks:
        out.append(f"### `{block.name}` (0x{block.base:04X}-0x{block.base + block.span - 1:04X})\n")
        out.append(block.doc + "\n")
        if not block.registers:
            continue
        out.append("| address | name | access | reset | fields | meaning |")
        out.append("|---|---|---|---|---|---|")
        for info in REGISTER_MAP:
            if info.block is not block:
                continue
            addr = f"0x{info.address:04X}"
            if info.count > 1:
                addr += f"-0x{info.address + info.count - 1:04X}"
            access = info.access.value + (" (memory)" if getattr(info, "memory", False) else "")
            out.append(f"| {addr} | `{info.path}` | {access} | 0x{info.init:08X} "
                       f"| {_fields(info.layout)} | {info.doc} |")
        out.append("")
    return "\n".join(out)


def _layout_table(layout):
    """Rows ``| field | bits | shape |`` of a StructLayout (enum shapes by name)."""
    rows = ["| field | bits | shape |", "|---|---|---|"]
    for name, fld in layout:
        width = data.Layout.cast(fld.shape).size if isinstance(fld.shape, data.Layout) else fld.width
        bits = f"{fld.offset}" if width == 1 else f"{fld.offset + width - 1}:{fld.offset}"
        shape = getattr(fld.shape, "__name__", f"unsigned({width})")
        rows.append(f"| `{name}` | [{bits}] | {shape} |")
    return "\n".join(rows)


def _modulator_section():
    """Alice's CHOICES packing and REPORTS records (``gateware.spec.modulator``)."""
    from . import modulator as mod
    return f"""## Alice: choices and reports

{inspect.getdoc(mod)}

### `ChoiceLayout` (one slot, {mod.ChoiceLayout.size} bits; {mod.SLOTS_PER_BYTE} slots per CHOICES byte, the earlier in bits 3:0)

{_layout_table(mod.ChoiceLayout)}

#### `Basis`

{_enum_table(mod.Basis, "{}")}

#### `Intensity`

{_enum_table(mod.Intensity, "{}")}

#### `Bb84State` (the modulator state output)

{_enum_table(mod.Bb84State, "{}")}

### `ReportLayout` (one REPORTS record, {mod.REPORT_BYTES} bytes, least significant byte first)

{_layout_table(mod.ReportLayout)}

#### `ReportKind`

{_enum_table(mod.ReportKind)}

The LFSR test pattern is Fibonacci, taps {mod.LFSR_TAPS} ({mod.LFSR_WIDTH} bits), shifted left;
each slot plays the state's low 4 bits, then the state shifts 4 times. Slots are at least
{mod.MIN_SLOT_PERIOD} clock cycles.
"""


def _record_tables():
    """Event record layouts of the EVENTS stream: one table of fields per record kind."""
    out = [inspect.getdoc(tagger).split("\n\n", 2)[2] + "\n",
           _enum_table(tagger.RecordKind, "{}") + "\n",
           "Marker codes (`MARKER` records):\n", _enum_table(tagger.MarkerCode, "{}") + "\n"]
    for kind, layout in tagger.RECORD_LAYOUTS.items():
        out.append(f"### `{kind.name}` record\n")
        out.append("| bits | field | meaning |")
        out.append("|---|---|---|")
        for name, fld in sorted(layout, key=lambda item: -item[1].offset):
            offset, width = tagger.field_slice(layout, name)
            bits = f"{offset}" if width == 1 else f"{offset + width - 1}:{offset}"
            meaning = "record kind: " + kind.name if name == "kind" else \
                _RECORD_FIELD_DOCS.get(name, "")
            out.append(f"| [{bits}] | `{name}` | {meaning} |")
        out.append("")
    return "\n".join(out)


_RECORD_FIELD_DOCS = {
    "mask": "channels with an accepted click in the slot (bit ch)",
    "slot": "slot number within the frame",
    "phase": "bins from the slot start to the earliest accepted click",
    "frame": "frame number (FRAME: absolute since clear, wraps; MARKER: its low bits)",
    "events": "detection events dropped here (saturates)",
    "markers": "marker records dropped here (saturates)",
    "code": "MarkerCode",
}


def render_protocol():
    """Return the Markdown text of ``docs/protocol.md``."""
    rules = inspect.getdoc(protocol)
    major, minor, patch = GATEWARE_VERSION
    return f"""<!-- Generated by `qkdnode docs protocol --write docs/protocol.md` from gateware/spec.
     Do not edit by hand: a test fails when this file differs from the spec. -->
# qkdnode wire protocol and register map

Protocol version {protocol.PROTOCOL_VERSION}; gateware {major}.{minor}.{patch}; device id
0x{DEVICE_ID:08X} (ASCII "QKDN").

## Framing

{rules}

| constant | value | meaning |
|---|---|---|
| `HEADER_LEN` | {protocol.HEADER_LEN} | opcode, sequence number |
| `CRC_LEN` | {protocol.CRC_LEN} | CRC-16/CCITT-FALSE, poly 0x{protocol.CRC_POLY:04X}, init 0x{protocol.CRC_INIT:04X}, MSB first |
| `MAX_PAYLOAD` | {protocol.MAX_PAYLOAD} | bytes of payload in one frame |
| `MAX_FRAME` | {protocol.MAX_FRAME} | bytes of header + payload + CRC |
| `MAX_ENCODED` | {protocol.MAX_ENCODED} | bytes on the wire for the largest frame, delimiter included |
| `MAX_BURST` | {protocol.MAX_BURST} | registers in one `BURST_READ` |

## Opcodes

{_enum_table(Opcode)}

## Error codes (`ERROR` reply: `request_opcode:u8 code:u8 detail:u16`)

{_enum_table(ErrorCode)}

## Stream channels

{_enum_table(StreamChannel)}

## Register map

Registers are 32 bits wide at 16-bit word addresses; access `ro` is read-only, `rw` read-write,
`w1p` write-one-to-pulse (reads 0). Field bit ranges are `[msb:lsb]`.

{_register_tables()}
{_modulator_section()}
## Event records (`EVENTS` stream, Bob's tagger)

{_record_tables()}"""
