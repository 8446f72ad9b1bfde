"""The tagger's event counters in block RAM: narrow pre-counters in the fabric, flushed in turn.

Every counter may grow by up to ``max_inc`` per clock. Holding ``n`` 32-bit counters in flip-flops
costs ``32 n`` flip-flops and adder LUTs, and a ``32 n``-bit read multiplexer in the register
bank; here each counter is a narrow *pre-counter* in the fabric plus one 32-bit word of a block
RAM. A pointer visits the counters in turn, one per clock, and adds the pre-counter into the RAM
word in a three-clock read-add-write pipeline (fetch the pre-counter and read the word; register
the word; write word + pre-counter). A word is rewritten every ``n`` clocks, so its next read
never overtakes its write (``n`` >= 3).

The host reads word ``r_addr`` on ``r_data`` one clock later (a second read port). A word read
lacks the increments still in its pre-counter: a counter read lags the true count by at most
``2 n + 4`` clocks of increments (under a microsecond on every board), and is exact once the
inputs have been quiet that long.

``clear`` (a one-clock pulse) zeroes every counter as the flip-flop counters did: the pre-counters
drop to zero (increments in the clear clock are not counted), the RAM words are swept to zero in
``n`` clocks (``clearing`` is 1 meanwhile and ``r_data`` reads 0), and flushing starts again from
counter 0. The pre-counters keep counting during the sweep; they are sized for the longest wait.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .csr import or_tree

__all__ = ["CounterFile"]


class CounterFile(wiring.Component):
    """``n`` 32-bit counters (wrapping at 2**32), each growing by ``inc[k]`` (0..``max_inc``)
    per clock; read through ``r_addr`` / ``r_data`` (synchronous).

    ``max_inc`` is one bound for all counters or a sequence of ``n`` bounds, one per counter:
    each pre-counter is only as wide as its own bound needs (``pre_widths``).
    """

    def __init__(self, n, max_inc=1):
        if n < 3:
            raise ValueError(f"CounterFile: {n} counters; the read-add-write pipeline needs >= 3")
        bounds = tuple(max_inc) if hasattr(max_inc, "__len__") else (max_inc,) * n
        if len(bounds) != n or min(bounds) < 1:
            raise ValueError(f"CounterFile: max_inc={max_inc}; use one bound >= 1 or {n} of them")
        self.n = n
        self.max_inc = max(bounds)
        # Longest wait between two flushes of one counter: a full sweep (n), a full round of the
        # pointer (n), the pipeline and the clear clock.
        self.pre_widths = tuple((b * (2 * n + 4)).bit_length() for b in bounds)
        self.pre_bits = max(self.pre_widths)
        super().__init__({
            "inc": In(range(self.max_inc + 1)).array(n),
            "clear": In(1),
            "clearing": Out(1),
            "r_addr": In(range(n)),
            "r_data": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n
        mem = Memory(shape=32, depth=n, init=[])
        m.submodules.mem = mem
        rmw = mem.read_port(transparent_for=())
        host = mem.read_port(transparent_for=())
        wr = mem.write_port()

        # Clear sweep: ``sweep`` walks the words while ``clearing``.
        sweep = Signal(range(n))
        clearing = Signal()
        m.d.comb += self.clearing.eq(clearing)
        with m.If(self.clear):
            m.d.sync += [clearing.eq(1), sweep.eq(0)]
        with m.Elif(clearing):
            m.d.sync += sweep.eq(sweep + 1)
            with m.If(sweep == n - 1):
                m.d.sync += clearing.eq(0)

        # Flush pointer, one-hot (the pre-counter select is then an AND-OR of registers).
        ptr = Signal(range(n))
        hot = Signal(n, init=1)
        run = ~clearing & ~self.clear
        with m.If(self.clear):
            m.d.sync += [ptr.eq(0), hot.eq(1)]
        with m.Elif(run):
            with m.If(ptr == n - 1):
                m.d.sync += [ptr.eq(0), hot.eq(1)]
            with m.Else():
                m.d.sync += [ptr.eq(ptr + 1), hot.eq(hot.rotate_left(1))]

        # Stage A: take the pointed pre-counter out (it restarts from this clock's increment)
        # and read its word.
        pre = [Signal(self.pre_widths[k], name=f"pre{k}") for k in range(n)]
        taken = Signal(self.pre_bits)
        m.d.comb += taken.eq(or_tree([pre[k] & hot[k].replicate(self.pre_widths[k])
                                      for k in range(n)]))
        for k in range(n):
            with m.If(self.clear):
                m.d.sync += pre[k].eq(0)
            with m.Elif(run & hot[k]):
                m.d.sync += pre[k].eq(self.inc[k])
            with m.Else():
                m.d.sync += pre[k].eq(pre[k] + self.inc[k])
        m.d.comb += [rmw.addr.eq(ptr), rmw.en.eq(1)]
        b_valid, b_addr, b_delta = Signal(), Signal(range(n)), Signal(self.pre_bits)
        m.d.sync += [b_valid.eq(run), b_addr.eq(ptr), b_delta.eq(taken)]

        # Stage B: the word is on the read port; register it.
        c_valid, c_addr, c_delta, c_word = (Signal(), Signal(range(n)), Signal(self.pre_bits),
                                            Signal(32))
        m.d.sync += [c_valid.eq(b_valid & run), c_addr.eq(b_addr), c_delta.eq(b_delta),
                     c_word.eq(rmw.data)]

        # Stage C: write word + pre-counter (or the sweep's zero).
        with m.If(clearing):
            m.d.comb += [wr.en.eq(1), wr.addr.eq(sweep), wr.data.eq(0)]
        with m.Else():
            m.d.comb += [wr.en.eq(c_valid & ~self.clear), wr.addr.eq(c_addr),
                         wr.data.eq(c_word + c_delta)]

        # Host read port: zero while the sweep runs (the counters are zero from the clear on).
        host_zero = Signal()
        m.d.sync += host_zero.eq(clearing | self.clear)
        m.d.comb += [host.addr.eq(self.r_addr), host.en.eq(1),
                     self.r_data.eq(Mux(host_zero, 0, host.data))]
        return m

