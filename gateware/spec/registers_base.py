"""Register-map machinery: how registers and blocks are described and placed at addresses.

The registers themselves are in ``registers.py`` (core, link) and in each feature's spec module
(``tagger.py``, ``modulator.py``).
"""

from dataclasses import dataclass, field

from amaranth.lib import data, enum

__all__ = ["Access", "Register", "Block", "RegisterInfo", "RegisterMap"]


class Access(enum.Enum):
    """How the host may access a register."""
    #: Read-only: driven by the gateware; writes are refused with READ_ONLY.
    RO = "ro"
    #: Read-write: holds what the host wrote (from reset value ``init``).
    RW = "rw"
    #: Write-one-pulse: each 1 bit written is a one-cycle strobe; reads return 0.
    W1P = "w1p"


@dataclass(frozen=True)
class Register:
    """One 32-bit register (or ``count`` consecutive ones sharing a name, read as ``name[i]``)."""
    name: str
    access: Access
    doc: str
    shape: object = 32
    init: int = 0
    count: int = 1
    #: Backed by a memory in the gateware (an ``RO`` array read through one read port, e.g. a
    #: histogram) instead of one port per element.
    memory: bool = False

    def __post_init__(self):
        if self.memory and (self.access is not Access.RO or self.count < 2):
            raise ValueError(f"register {self.name!r}: a memory-backed register must be a "
                             f"read-only array (count >= 2)")

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

    def subset(self, names):
        """Return a map of only the blocks called ``names``, at the same addresses."""
        missing = set(names) - {block.name for block in self.blocks}
        if missing:
            raise KeyError(f"no block {sorted(missing)[0]!r}")
        return RegisterMap([block for block in self.blocks if block.name in names])

    def block(self, name):
        """Return the block called ``name``."""
        for block in self.blocks:
            if block.name == name:
                return block
        raise KeyError(f"no block {name!r}")
