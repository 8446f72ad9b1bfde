"""The register bank, built from ``gateware.spec.REGISTER_MAP``.

The bank owns the storage of ``rw`` registers and the strobes of ``w1p`` ones; ``ro`` registers
are inputs the cores drive (left undriven, they read their ``init`` from the spec, which is how
``core.id`` and ``core.version`` are constants). Cores reach a register by its spec name:
``bank.reg("core.scratch")``. Nothing here knows an address: they all come from the map.

A memory-backed register (``Register(memory=True)``, e.g. a histogram) has no port per element:
``bank.mem("block.name")`` returns its ``(addr, data)`` pair. The bank drives ``addr`` (the element
index, from the bus address) every cycle; the owner puts it on a synchronous memory read port and
returns the element on ``data`` one cycle later, which is when the bank answers the read.

``read_ports`` does the same for a run of ordinary read-only registers a core keeps in a memory
(Bob's counters on the iCE40): ``{name: (path, ...)}`` with the registers contiguous in the map;
``bank.mem(name)`` is then the read port, word ``i`` being the ``i``-th element from the first
register's address, and those registers get no port of their own. The map, and so the host's
view, does not change.
"""

from amaranth import *
from amaranth.lib import wiring, data
from amaranth.lib.wiring import In, Out

from ..spec.registers import REGISTER_MAP, Access

__all__ = ["CSRBus", "RegisterBank"]


#: Register access from the link (the initiator's view). Reads: put ``addr`` and pulse
#: ``r_stb``; ``r_data`` holds the value from the next cycle on. Writes: ``addr``, ``w_data``
#: and a ``w_stb`` pulse. ``addr`` must be held from at least one cycle before a strobe (the
#: bank decodes it in that cycle). ``mapped`` and ``writable`` decode the ``addr`` of the previous cycle
#: (registered), so the link holds an address one cycle before it decides on it, and can refuse
#: a request before it has any effect.
CSRBus = wiring.Signature({
    "addr": Out(REGISTER_MAP.ADDRESS_WIDTH),
    "r_stb": Out(1),
    "r_data": In(32),
    "w_stb": Out(1),
    "w_data": Out(32),
    "mapped": In(1),
    "writable": In(1),
})


def _port_name(path, index=None):
    name = path.replace(".", "__")
    return name if index is None else f"{name}__{index}"


class RegisterBank(wiring.Component):
    """Registers of ``register_map``, one port per register element.

    ``ro`` elements are ``In`` ports (driven by cores), ``rw`` elements ``Out`` ports holding
    the stored value, ``w1p`` elements ``Out`` ports that pulse for one cycle per write.
    """

    def __init__(self, register_map=REGISTER_MAP, *, read_ports=None):
        self._map = register_map
        members = {"bus": In(CSRBus)}
        # Memory read ports: (name, first address, words); covered paths have no port of their own.
        self._ports = {}
        covered = set()
        for name, paths in (read_ports or {}).items():
            infos = [register_map[path] for path in paths]
            for info in infos:
                if info.access != Access.RO or info.memory:
                    raise ValueError(f"read port {name!r}: {info.path} is not a plain read-only "
                                     f"register")
            for a, b in zip(infos, infos[1:]):
                if b.address != a.address + a.count:
                    raise ValueError(f"read port {name!r}: {b.path} does not follow {a.path} "
                                     f"in the map")
            self._ports[name] = (infos[0].address, sum(info.count for info in infos))
            covered.update(info.path for info in infos)
            members[_port_name(name) + "__addr"] = Out(range(self._ports[name][1]))
            members[_port_name(name) + "__data"] = In(32)
        for info in register_map:
            if info.memory:
                self._ports[info.path] = (info.address, info.count)
        self._covered = covered
        for info in register_map:
            if info.path in covered:
                continue
            init = info.init if info.access != Access.W1P else 0
            if info.layout is not None:
                init = info.layout.from_bits(init)
            if info.memory:
                members[_port_name(info.path) + "__addr"] = Out(range(info.count))
                members[_port_name(info.path) + "__data"] = In(info.shape)
                continue
            for i in range(info.count):
                name = _port_name(info.path, i if info.count > 1 else None)
                members[name] = (In if info.access == Access.RO else Out)(info.shape, init=init)
        super().__init__(members)

    def mem(self, path):
        """Return ``(addr, data)``: the read port of memory-backed register ``path`` (or of the
        ``read_ports`` entry ``path``)."""
        if path not in self._ports:
            raise ValueError(f"{path} is not memory-backed; use reg({path!r})")
        name = _port_name(path)
        return getattr(self, name + "__addr"), getattr(self, name + "__data")

    def reg(self, path, index=None):
        """Return the port of register ``path`` (``"block.name"``), element ``index`` of an array."""
        info = self._map[path]
        if path in self._covered:
            raise ValueError(f"{path} is read through a memory read port; use mem()")
        if info.count > 1 and index is None:
            raise ValueError(f"{path} is an array of {info.count}; give an index")
        return getattr(self, _port_name(path, index if info.count > 1 else None))

    def elaborate(self, platform):
        m = Module()
        bus = self.bus

        # Address decode, registered (it is on the link's decision path, and the map is large):
        # ``mapped``/``writable`` describe the address the bus held in the previous cycle.
        # Registers are contiguous from each block's base, so "mapped" is one range per block.
        def in_range(first, count):
            return (bus.addr >= first) & (bus.addr < first + count) if count > 1 else \
                (bus.addr == first)
        mapped = []
        for block in self._map.blocks:
            words = sum(reg.count for reg in block.registers)
            if words:
                mapped.append(in_range(block.base, words))
        writable = [in_range(info.address, info.count) for info in self._map
                    if info.access != Access.RO]
        m.d.sync += [bus.mapped.eq(Cat(*mapped).any()), bus.writable.eq(Cat(*writable).any())]

        # Reads are registered: the value is sampled when r_stb is high. A memory-backed register
        # answers from its read port's data in the next cycle instead.
        r_data = Signal(32)
        mem_hit = Signal(range(len(self._ports) + 1))   # 1 + index of the memory read, or 0
        m.d.comb += bus.r_data.eq(r_data)
        with m.If(bus.r_stb):
            m.d.sync += mem_hit.eq(0)
        for k, (path, (first, count)) in enumerate(self._ports.items()):
            addr, data_port = self.mem(path)
            offset = Signal(REGISTER_MAP.ADDRESS_WIDTH, name=f"offset{k}")
            m.d.comb += [offset.eq(bus.addr - first), addr.eq(offset)]
            inside = Signal(name=f"in_port{k}")   # registered, as the word selects below
            m.d.sync += inside.eq((bus.addr >= first) & (bus.addr < first + count))
            with m.If(bus.r_stb & inside):
                m.d.sync += mem_hit.eq(k + 1)
            with m.If(mem_hit == k + 1):
                m.d.comb += bus.r_data.eq(Value.cast(data_port))
        # Word selects, registered: the link holds ``addr`` at least one cycle before it strobes
        # (``CSRBus``), so a strobe finds its word's select already decoded, and the read is an
        # AND-OR of the words (no address compare on the strobe's path).
        sel = {}
        for info in self._map:
            if info.memory or info.path in self._covered:
                continue
            for i in range(info.count):
                address = info.address + i
                sel[address] = Signal(name=f"sel_{address:04x}")
                m.d.sync += sel[address].eq(bus.addr == address)
        terms = []
        for info in self._map:
            if info.access == Access.W1P or info.memory or info.path in self._covered:
                continue
            for i in range(info.count):
                port = Value.cast(self.reg(info.path, i if info.count > 1 else None))
                terms.append(Mux(sel[info.address + i], port, 0))
        with m.If(bus.r_stb):
            m.d.sync += r_data.eq(or_tree(terms) if terms else 0)

        for info in self._map:
            if info.access == Access.RO:
                continue
            for i in range(info.count):
                port = self.reg(info.path, i if info.count > 1 else None)
                width = info.width
                hit = bus.w_stb & sel[info.address + i]
                if info.access == Access.RW:
                    with m.If(hit):
                        m.d.sync += Value.cast(port).eq(bus.w_data[:width])
                else:
                    m.d.comb += Value.cast(port).eq(Mux(hit, bus.w_data[:width], 0))
        return m


def or_tree(values):
    """Return the OR of ``values`` as a balanced tree (shallow logic for a wide read mux)."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] | values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]
