"""A board's registers by name: the typed host API over ``controller.link`` and the spec's map.

Every address comes from ``gateware.spec.REGISTER_MAP``; names are ``"block.register"`` or, for a
register array, ``"block.register[i]"``. Values with a layout decode with ``layout.from_bits``.
"""

import re

from amaranth.hdl import Shape
from amaranth.lib import data

from gateware.spec.protocol import PROTOCOL_VERSION
from gateware.spec.registers import DEVICE_ID, GATEWARE_VERSION, REGISTER_MAP, Access

from .link.client import LinkClient
from .link.errors import VersionMismatch, WrongDevice
from .link.transport import DEFAULT_BAUD

__all__ = ["Device", "version_string"]

_NAME = re.compile(r"^(?P<path>[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)(?:\[(?P<index>\d+)\])?$")


def version_string(fields):
    """Return ``"major.minor.patch"`` from decoded core.version fields."""
    return f"{fields['major']}.{fields['minor']}.{fields['patch']}"


def _plain(value):
    """Return a decoded field as plain data: enum members as their name, views as dicts."""
    if hasattr(value, "name") and hasattr(value, "value"):
        return value.name
    return int(value) if not isinstance(value, dict) else value


class Device:
    """One board, reached by URL (``/dev/ttyUSB1``, ``socket://HOST:PORT``) or a LinkClient.

    ``timeout`` (s), ``retries`` and ``baudrate`` (baud) go to the LinkClient. With ``identify``
    (the default) the constructor checks the device id and version at once (see ``identify()``).
    """

    def __init__(self, target, *, timeout=0.25, retries=3, baudrate=DEFAULT_BAUD, identify=True,
                 regmap=REGISTER_MAP):
        if isinstance(target, LinkClient):
            self.link = target
        else:
            self.link = LinkClient(target, timeout=timeout, retries=retries, baudrate=baudrate)
        self.map = regmap
        if identify:
            try:
                self.identify()
            except BaseException:
                self.link.close()
                raise

    @property
    def url(self):
        """Return the link URL."""
        return self.link.url

    def close(self):
        """Close the link."""
        self.link.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- names ------------------------------------------------------------------------------------

    def lookup(self, name, index=None):
        """Return ``(RegisterInfo, address)`` for ``"block.reg"`` or ``"block.reg[i]"``."""
        match = _NAME.match(name)
        if not match:
            raise KeyError(f"{name!r} is not a register name; expected 'block.register' or "
                           f"'block.register[i]', e.g. 'core.scratch'")
        if match["index"] is not None:
            if index is not None:
                raise KeyError(f"{name!r}: give the index in the name or as index=, not both")
            index = int(match["index"])
        info = self.map[match["path"]]
        return info, self.map.address(info.path, index or 0)

    def _names(self, first_address, count):
        out = []
        for address in range(first_address, first_address + count):
            found = self.map.at(address)
            if found is None:
                raise KeyError(f"no register at word address 0x{address:04X} inside the range; "
                               f"a burst must cover mapped registers only")
            info, i = found
            out.append(info.path if info.count == 1 else f"{info.path}[{i}]")
        return out

    # -- access -----------------------------------------------------------------------------------

    def read(self, name, index=None):
        """Return the value of register ``name`` (an int; W1P registers read as 0)."""
        return self.link.read(self.lookup(name, index)[1])

    def write(self, name, value=None, *, index=None, **fields):
        """Write register ``name``: a whole ``value`` (int), or ``fields`` of its layout by name.

        With fields, the fields not named are written as 0; ``update()`` keeps them instead.
        """
        info, address = self.lookup(name, index)
        if info.access is Access.RO:
            raise PermissionError(f"{info.path} is read-only ({info.doc})")
        self.link.write(address, self._encode(info, value, fields))

    def update(self, name, *, index=None, **fields):
        """Change some ``fields`` of register ``name`` and keep the others (read-modify-write)."""
        info, _ = self.lookup(name, index)
        if info.layout is None:
            raise TypeError(f"{info.path} has no fields; use write({info.path!r}, value)")
        current = self.fields(name, index=index) if info.access is Access.RW else {}
        merged = {k: v for k, v in current.items()}
        merged.update(fields)
        self.write(name, index=index, **merged)

    def fields(self, name, index=None, value=None):
        """Return register ``name`` decoded by its layout, as ``{field: int or enum member}``.

        ``value`` decodes a value already read instead of reading the register.
        """
        info, address = self.lookup(name, index)
        layout = info.layout
        if layout is None:
            raise TypeError(f"{info.path} is a plain {info.width}-bit number with no fields")
        raw = self.link.read(address) if value is None else value
        view = layout.from_bits(raw & ((1 << layout.size) - 1))
        return {field: view[field] if not isinstance(view[field], data.Const) else view[field].as_value().value
                for field, _ in layout}

    def burst_read(self, first, last=None, *, count=None):
        """Return ``{name: value}`` of the registers from ``first`` through ``last`` (names).

        Give either ``last`` (inclusive) or ``count``; one name alone reads one register.
        """
        _, start = self.lookup(first)
        if last is not None and count is not None:
            raise TypeError("give last or count, not both")
        if last is not None:
            _, end = self.lookup(last)
            count = end - start + 1
            if count < 1:
                raise ValueError(f"{last} comes before {first} in the register map")
        count = 1 if count is None else count
        names = self._names(start, count)
        return dict(zip(names, self.link.burst_read(start, count)))

    def read_block(self, block):
        """Return ``{name: value}`` of every register in block ``block`` (one burst)."""
        regs = self.map.block(block).registers
        if not regs:
            return {}
        words = sum(reg.count for reg in regs)
        return dict(zip(self._names(self.map.block(block).base, words),
                        self.link.burst_read(self.map.block(block).base, words)))

    def _encode(self, info, value, fields):
        if fields:
            if value is not None:
                raise TypeError(f"write {info.path}: give a value or fields, not both")
            layout = info.layout
            if layout is None:
                raise TypeError(f"{info.path} has no fields; write it with an int value")
            known = [f for f, _ in layout]
            for f, v in fields.items():
                if f not in known:
                    raise KeyError(f"{info.path} has no field {f!r}; its fields are: {', '.join(known)}")
                width = Shape.cast(layout[f].shape).width
                raw = v.value if hasattr(v, "value") and not isinstance(v, int) else v
                if not 0 <= int(raw) < (1 << width):
                    raise ValueError(f"{info.path}.{f} = {v} does not fit its {width} bit(s)")
            return layout.const(fields).as_value().value
        if value is None:
            raise TypeError(f"write {info.path}: give a value or fields")
        value = int(value)
        if not 0 <= value < (1 << info.width):
            raise ValueError(f"{info.path} = {value:#x} does not fit its {info.width} bit(s)")
        return value

    # -- identity ---------------------------------------------------------------------------------

    def identify(self):
        """Check ``core.id`` and ``core.version``; return the decoded version fields.

        Raises WrongDevice if the id is not DEVICE_ID, VersionMismatch if the protocol version or
        the gateware major version differs from this host's spec.
        """
        regs = self.burst_read("core.id", "core.version")
        if regs["core.id"] != DEVICE_ID:
            raise WrongDevice(self.url, regs["core.id"], DEVICE_ID)
        version = self.fields("core.version", value=regs["core.version"])
        if version["protocol"] != PROTOCOL_VERSION or version["major"] != GATEWARE_VERSION[0]:
            found = f"gateware {version_string(version)} speaking protocol {version['protocol']}"
            expected = (f"gateware {GATEWARE_VERSION[0]}.x speaking protocol {PROTOCOL_VERSION}")
            raise VersionMismatch(self.url, found, expected)
        return version

    def info(self):
        """Return ``{id, version, protocol, git_hash, role, channels, dirty, clk_hz}`` of the board.

        ``id`` and ``git_hash`` are hex strings, ``version`` is ``"major.minor.patch"``, ``clk_hz``
        is the system clock in Hz.
        """
        regs = self.burst_read("core.id", "core.clk_hz")
        version = self.fields("core.version", value=regs["core.version"])
        platform = self.fields("core.platform", value=regs["core.platform"])
        return {
            "id": f"0x{regs['core.id']:08X}",
            "version": version_string(version),
            "protocol": int(version["protocol"]),
            "git_hash": f"{regs['core.git_hash']:08x}",
            "role": _plain(platform["role"]),
            "channels": int(platform["channels"]),
            "dirty": bool(platform["dirty"]),
            "clk_hz": regs["core.clk_hz"],
        }
