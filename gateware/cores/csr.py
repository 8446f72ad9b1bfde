"""The register bank, built from ``gateware.spec.REGISTER_MAP``.

The bank owns the storage of ``rw`` registers and the strobes of ``w1p`` ones; ``ro`` registers
are inputs the cores drive (left undriven, they read their ``init`` from the spec, which is how
``core.id`` and ``core.version`` are constants). Cores reach a register by its spec name:
``bank.reg("core.scratch")``. Nothing here knows an address: they all come from the map.

A memory-backed register (``Register(memory=True)``, e.g. a histogram) has no port per element:
``bank.mem("block.name")`` returns its ``(addr, data)`` pair. The bank drives ``addr`` (the element
index, from the bus address) every cycle; the owner puts it on a synchronous memory read port and
returns the element on ``data`` one cycle later, which is when the bank answers the read.
"""

from amaranth import *
from amaranth.lib import wiring, data
from amaranth.lib.wiring import In, Out

from ..spec.registers import REGISTER_MAP, Access

__all__ = ["CSRBus", "RegisterBank"]


#: Register access from the link (the initiator's view). Reads: put ``addr`` and pulse
#: ``r_stb``; ``r_data`` holds the value from the next cycle on. Writes: ``addr``, ``w_data``
#: and a ``w_stb`` pulse. ``mapped`` and ``writable`` decode the ``addr`` of the previous cycle
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

    def __init__(self, register_map=REGISTER_MAP):
        self._map = register_map
        members = {"bus": In(CSRBus)}
        for info in register_map:
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
        """Return ``(addr, data)``: the read port of memory-backed register ``path``."""
        info = self._map[path]
        if not info.memory:
            raise ValueError(f"{path} is not memory-backed; use reg({path!r})")
        name = _port_name(path)
        return getattr(self, name + "__addr"), getattr(self, name + "__data")

    def reg(self, path, index=None):
        """Return the port of register ``path`` (``"block.name"``), element ``index`` of an array."""
        info = self._map[path]
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
        memories = [info for info in self._map if info.memory]
        mem_hit = Signal(range(len(memories) + 1))   # 1 + index of the memory read, or 0
        m.d.comb += bus.r_data.eq(r_data)
        with m.If(bus.r_stb):
            m.d.sync += mem_hit.eq(0)
        for k, info in enumerate(memories):
            addr, data_port = self.mem(info.path)
            offset = Signal(REGISTER_MAP.ADDRESS_WIDTH)
            m.d.comb += [offset.eq(bus.addr - info.address), addr.eq(offset)]
            with m.If(bus.r_stb & (bus.addr >= info.address) &
                      (bus.addr < info.address + info.count)):
                m.d.sync += mem_hit.eq(k + 1)
            with m.If(mem_hit == k + 1):
                m.d.comb += bus.r_data.eq(Value.cast(data_port))
        with m.If(bus.r_stb):
            m.d.sync += r_data.eq(0)
            with m.Switch(bus.addr):
                for info in self._map:
                    if info.access == Access.W1P or info.memory:
                        continue
                    for i in range(info.count):
                        port = self.reg(info.path, i if info.count > 1 else None)
                        with m.Case(info.address + i):
                            m.d.sync += r_data.eq(Value.cast(port))

        for info in self._map:
            if info.access == Access.RO:
                continue
            for i in range(info.count):
                port = self.reg(info.path, i if info.count > 1 else None)
                width = info.width
                hit = bus.w_stb & (bus.addr == info.address + i)
                if info.access == Access.RW:
                    with m.If(hit):
                        m.d.sync += Value.cast(port).eq(bus.w_data[:width])
                else:
                    m.d.comb += Value.cast(port).eq(Mux(hit, bus.w_data[:width], 0))
        return m
