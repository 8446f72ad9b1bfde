"""8N1 UART receiver and transmitter as byte streams.

Both take ``divisor``, the bit period in clock cycles (clock Hz / baud, an integer >= 4);
``divisor_for`` computes it and refuses rates the clock cannot reach within 2 %.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "divisor_for", "MIN_DIVISOR", "MAX_BAUD_ERROR"]

#: Smallest bit period in clock cycles: mid-bit sampling needs a half period of at least 2.
MIN_DIVISOR = 4
#: Largest relative baud error ``divisor_for`` accepts.
MAX_BAUD_ERROR = 0.02


def divisor_for(clk_hz, baud):
    """Return the integer bit period, in clock cycles, for ``baud`` (bit/s) at ``clk_hz`` (Hz).

    Raises ``ValueError`` when the nearest integer divisor is below ``MIN_DIVISOR`` or misses
    the requested rate by more than ``MAX_BAUD_ERROR``.
    """
    if clk_hz <= 0 or baud <= 0:
        raise ValueError(f"UART: clock ({clk_hz} Hz) and baud rate ({baud} bit/s) must be positive")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"UART: {baud} bit/s needs a divisor of {clk_hz / baud:.2f} at "
                         f"{clk_hz} Hz, below the minimum {MIN_DIVISOR}; lower the baud rate "
                         f"to at most {clk_hz // MIN_DIVISOR} bit/s or raise the clock")
    actual = clk_hz / divisor
    error = abs(actual - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"UART: {baud} bit/s is not reachable from {clk_hz} Hz: the nearest "
                         f"divisor {divisor} gives {actual:.0f} bit/s ({error:.1%} off, "
                         f"limit {MAX_BAUD_ERROR:.0%}); pick a baud rate near clk_hz / n")
    return divisor


def _check_divisor(divisor):
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"UART: divisor must be an integer >= {MIN_DIVISOR} (clock cycles per "
                         f"bit), not {divisor!r}; use divisor_for(clk_hz, baud)")


class UARTRx(wiring.Component):
    """Receive 8N1 bytes from the ``rx`` pin into ``o_stream``.

    * ``rx``: the raw pin, idle high; synchronised here with two flip-flops.
    * ``o_stream``: one beat per received byte (8 bits); holds the byte until accepted.
    * ``overrun``: one-cycle pulse when a byte completes while ``o_stream`` still holds an
      unaccepted one; the new byte is dropped.
    * ``frame_error``: one-cycle pulse when the stop bit reads low; the byte is dropped and the
      receiver waits for the line to go high (a break) before looking for a start bit.

    Bits are sampled once, in the middle of the bit period, timed from the start-bit edge, so
    the receiver tolerates the sender's clock being a few % off (about +-4 % at large divisors,
    less at divisor 4 where the edge is only known to within one of four cycles).
    """

    rx: In(1, init=1)
    o_stream: Out(stream.Signature(8))
    overrun: Out(1)
    frame_error: Out(1)

    def __init__(self, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(self.divisor))
        bits = Signal(range(8))
        shreg = Signal(8)

        with m.If(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        m.d.sync += [self.overrun.eq(0), self.frame_error.eq(0)]

        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # The edge is seen 0..1 cycles late; aim for the middle of the start bit.
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.next = "IDLE"  # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(self.divisor - 1), bits.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), timer.eq(self.divisor - 1),
                                 bits.eq(bits + 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(~rx):
                        m.d.sync += self.frame_error.eq(1)
                        m.next = "BREAK"
                    with m.Elif(self.o_stream.valid & ~self.o_stream.ready):
                        m.d.sync += self.overrun.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [self.o_stream.payload.eq(shreg),
                                     self.o_stream.valid.eq(1)]
                        m.next = "IDLE"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """Transmit the bytes of ``i_stream`` as 8N1 on the ``tx`` pin (idle high).

    A byte waiting in ``i_stream`` is taken in the last cycle of the previous stop bit, so
    back-to-back bytes leave with no idle time between them.
    """

    i_stream: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        busy = Signal()
        timer = Signal(range(self.divisor))
        bits = Signal(range(10))  # bits still to shift out after the current one
        shreg = Signal(9)         # data bits then the stop bit, LSB first

        last_cycle = (timer == 0) & (bits == 0)
        m.d.comb += self.i_stream.ready.eq(~busy | last_cycle)

        with m.If(busy):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Elif(bits != 0):
                m.d.sync += [self.tx.eq(shreg[0]), shreg.eq(shreg >> 1), bits.eq(bits - 1),
                             timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += busy.eq(0)

        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [self.tx.eq(0), shreg.eq(Cat(self.i_stream.payload, 1)), bits.eq(9),
                         timer.eq(self.divisor - 1), busy.eq(1)]
        return m
