"""Bus-functional models of the board's pins for cocotb testbenches (RTL simulation)."""

from .uart import UARTSink, UARTSource

__all__ = ["UARTSource", "UARTSink"]
