"""cocotb side of the RTL twin (``hil.twin``): bridges a TCP socket on 127.0.0.1 to the UART pins
of the gateware top running in Verilator. Bytes from the TCP client are driven onto ``rx``;
bytes the gateware sends on ``tx`` go back to the client.

Simulated time only advances while there is work or in idle steps of ``IDLE_CYCLES``; while the
line is quiet the loop blocks in ``select`` (the simulator waits with it), so an idle twin costs
no CPU. Configuration comes from the environment set by ``hil.twin``.
"""

import os
import select
import socket

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from hil.bfm.uart import UARTSink, UARTSource

DIVISOR = int(os.environ.get("UART_DIVISOR", "4"))
CLK_PERIOD_PS = int(os.environ.get("TWIN_CLK_PERIOD_PS", "20834"))
#: Clock cycles simulated per idle step: 16 UART byte-times, so device-to-host data that the
#: gateware produces on its own (a stream flush) still reaches the client promptly.
IDLE_CYCLES = 16 * 10 * DIVISOR


@cocotb.test()
async def serve(dut):
    """Serve the gateware's UART on a TCP port until the process is stopped."""
    cocotb.start_soon(Clock(dut.clk, CLK_PERIOD_PS, unit="ps").start())
    source = UARTSource(dut.rx, dut.clk, DIVISOR)
    sink = UARTSink(dut.tx, dut.clk, DIVISOR)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0

    listener = socket.create_server(("127.0.0.1", int(os.environ.get("TWIN_PORT", "0"))))
    port = listener.getsockname()[1]
    port_file = os.environ.get("TWIN_PORT_FILE")
    if port_file:
        with open(port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(port_file + ".tmp", port_file)
    dut._log.info("RTL twin serving on 127.0.0.1:%d", port)

    client = None
    idle_steps = 0
    while True:
        readable = [listener] + ([client] if client else [])
        # Block (in wall time) only when nothing is happening in the simulation either.
        timeout = 0.05 if idle_steps > 64 and sink.empty() else 0
        ready, _, _ = select.select(readable, [], [], timeout)
        if listener in ready:
            if client:
                client.close()  # a new connection replaces the old, as with a serial port
            client, _ = listener.accept()
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = b""
        if client and client in ready:
            try:
                data = client.recv(65536)
            except ConnectionError:
                data = b""
            if not data:
                client.close()
                client = None
        if data:
            idle_steps = 0
            await source.send(data)
        else:
            idle_steps += 1
            await ClockCycles(dut.clk, IDLE_CYCLES)
        if not sink.empty():
            out = bytes(sink.queue)
            sink.queue.clear()
            idle_steps = 0
            if client:
                try:
                    client.sendall(out)
                except ConnectionError:
                    client.close()
                    client = None
