"""Benchmark of windowed host-to-device streaming: ``LinkClient.stream_write`` with one frame in
flight against ``window`` frames, in the same run.

The target is Alice's model board (``hil.model``, role ALICE) on TCP, streaming on CHOICES into
a choice FIFO of ``--fifo`` bytes that is not played (no run), flushed between repeats, so the
figures are the link's and the host's, not the modulator's. The board (and the relay) run in
processes of their own. Two links:

* ``tcp``: the model's socket as is (no UART pacing: host and model CPU bound the rate);
* ``paced``: through a relay that paces each direction like a UART at ``--baud`` (8N1, 10
  bit-times a byte), as the 12 Mbaud board link would: nothing arrives before the line would
  have delivered it (a late thread wake-up only delays it). The model has no UART pacing.

Alice's feeder (``controller.alice.AliceFeeder.run``) through the paced link, for each
``--slot-period`` (48 MHz cycles) and window 1 against the largest window: ``feed_pP_wW_*``,
slots played in ``--feed-seconds`` and the fraction that underflowed (the FIFO ran dry: vacuum).

With ``--rtl``, also the RTL twin (LINK image in Verilator, ``hil.twin``) on LOOPBACK, timed in
simulated clock cycles (``core.cycles`` before and after): bytes per simulated second.

Figures per link and window W (medians over ``--repeats``): ``*_wW_bytes_per_s`` (stream data
bytes the board took per wall second), ``*_slots_per_s`` (two choices a byte),
``*_cpu_us_per_kb`` (the host process's CPU time per 1000 bytes), ``*_wW_ratio`` (window W over
window 1) and, paced, ``*_line_use``: the data rate over the UART's data capacity (``baud / 10``
bytes/s times full-frame efficiency).

Run ``qkdnode bench stream --json`` or ``python -m bench.stream``.
"""

import argparse
import collections
import json
import multiprocessing
import os
import random
import socket
import statistics
import threading
import time

from controller.link.client import STREAM_CHUNK
from controller.link.codec import encode_frame
from gateware.spec.protocol import UART_BITS_PER_BYTE, StreamChannel
from gateware.spec.registers import REGISTER_MAP, Role

BAUD = 12_000_000


def _parse(argv):
    parser = argparse.ArgumentParser(prog="qkdnode bench stream",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--bytes", type=int, default=60_000, help="bytes streamed per repeat")
    parser.add_argument("--fifo", type=int, default=60_000, help="model choice FIFO, bytes")
    parser.add_argument("--window", type=int, nargs="+", default=[8, 16, 32],
                        help="frames in flight, windowed cases (each against window 1)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats; figures are medians")
    parser.add_argument("--baud", type=int, default=BAUD, help="UART rate of the paced relay")
    parser.add_argument("--slot-period", type=int, nargs="+", default=[48, 24],
                        help="feeder runs: modulator slot periods, 48 MHz clock cycles")
    parser.add_argument("--feed-seconds", type=float, default=2.0, help="length of a feeder run")
    parser.add_argument("--rtl", action="store_true", help="also the RTL twin (Verilator)")
    parser.add_argument("--rtl-bytes", type=int, default=8_000, help="bytes per RTL repeat")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random data")
    args = parser.parse_args(argv)
    if not 0 < args.bytes <= args.fifo <= 0xFFFF:
        parser.error("need 0 < --bytes <= --fifo <= 65535 (the reply's free field is 16 bits)")
    return args


class PacedRelay:
    """Relay TCP between a client and ``target`` (host, port), pacing each direction like a UART:
    each byte takes ``UART_BITS_PER_BYTE / baud`` s of line time after the previous one, and what
    arrives in one piece is handed on when the line would have delivered its last byte, or later
    when the thread wakes late (then with everything else that is due, in one send)."""

    def __init__(self, target, baud):
        self.target = target
        self.byte_s = UART_BITS_PER_BYTE / baud
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.threads = []
        self.socks = []

    def __enter__(self):
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self.threads.append(thread)
        return self

    def __exit__(self, *exc):
        self.listener.close()
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self.threads:
            t.join(timeout=2)

    def _accept(self):
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        board = socket.create_connection(self.target)
        for s in (client, board):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socks += [client, board]
        for src, dst in ((client, board), (board, client)):
            thread = threading.Thread(target=self._pump, args=(src, dst), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _pump(self, src, dst):
        """Receive from ``src``; queue each piece with the time the line would deliver its last
        byte; a sender thread hands on, in one send, every piece that is due."""
        queue = collections.deque()
        ready = threading.Condition()
        closed = []

        def sender():
            while True:
                with ready:
                    while not queue and not closed:
                        ready.wait()
                    if not queue:
                        return
                    due = queue[0][0]
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                now = time.perf_counter()
                out = []
                with ready:
                    while queue and queue[0][0] <= now:
                        out.append(queue.popleft()[1])
                try:
                    dst.sendall(b"".join(out))
                except OSError:
                    return

        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        line_free = 0.0                              # when the line delivers the last byte queued
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            with ready:
                if not data:
                    closed.append(True)
                    ready.notify()
                    return
                line_free = max(line_free, time.perf_counter()) + len(data) * self.byte_s
                queue.append((line_free, data))
                ready.notify()


def _stream_model(url, data, window, repeats):
    """Stream ``data`` ``repeats`` times into an emptied FIFO; return (bytes/s list, host CPU s
    per byte list, stats)."""
    from controller.device import Device

    rates, cpu = [], []
    with Device(url, timeout=1.0, retries=3) as dev:
        link = dev.link
        link.window = window
        depth = dev.read("modulator.choices_depth")
        for _ in range(repeats):
            dev.write("modulator.command", flush=1)
            link.stream_query(StreamChannel.CHOICES)
            c0, t0 = time.process_time(), time.perf_counter()
            link.stream_write(StreamChannel.CHOICES, data)
            t1, c1 = time.perf_counter(), time.process_time()
            if dev.fields("modulator.status")["choices_free"] != depth - len(data):
                raise RuntimeError("the board's FIFO does not hold the bytes streamed")
            rates.append(len(data) / (t1 - t0))
            cpu.append((c1 - c0) / len(data))
        stats = link.stats
    return rates, cpu, stats


def _feed(url, window, slot_period, seconds):
    """Run Alice's feeder for ``seconds`` at ``slot_period``; return (slots played, underflowed
    slots, host CPU s)."""
    from controller.alice import AliceFeeder, ChoiceSampler, OSSource
    from controller.device import Device

    with Device(url, timeout=1.0, retries=3) as dev:
        dev.link.window = window
        feeder = AliceFeeder(dev, ChoiceSampler(), OSSource(), slot_period=slot_period,
                             chunk=0xFFFF)
        feeder.configure()
        c0 = time.process_time()
        feeder.run(seconds)
        cpu = time.process_time() - c0
        first, count, underflows = feeder.record.runs[-1]
    return count, sum(n for _, n in underflows), cpu


def _serve_model(conn, fifo):
    """Child process: serve an Alice model board with a ``fifo``-byte choice FIFO; send the port."""
    from hil.model import ModelBoard, ModelServer
    server = ModelServer(ModelBoard(role=Role.ALICE, alice_options={"choices_depth": fifo}))
    conn.send((server.host, server.port))
    server.serve_forever()


def _serve_relay(conn, target, baud):
    """Child process: serve a PacedRelay to ``target``; send its URL."""
    with PacedRelay(target, baud) as relay:
        conn.send(relay.url)
        for thread in relay.threads:
            thread.join()
        while True:
            time.sleep(1)


class _Child:
    """Run ``target(conn, *args)`` in a forked process; ``value`` is what it sends first."""

    def __init__(self, target, *args):
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        if not parent.poll(30):
            self.proc.terminate()
            raise RuntimeError(f"{target.__name__} did not start")
        self.value = parent.recv()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.join(5)


def _stream_rtl(url, data, window, repeats):
    """Stream ``data`` over LOOPBACK to the twin; return (bytes per simulated s list, stats)."""
    from controller.device import Device

    rates = []
    with Device(url, timeout=5.0, retries=3) as dev:
        dev.link.window = window
        dev.write("core.control", loopback=1)
        clk_hz = dev.read("core.clk_hz")
        for _ in range(repeats):
            c0 = dev.read("core.cycles")
            dev.link.stream_write(StreamChannel.LOOPBACK, data, stall_timeout=60)
            back = dev.link.stream_read(StreamChannel.LOOPBACK, len(data), timeout=120)
            c1 = dev.read("core.cycles")
            if back != data:
                raise RuntimeError("the twin's loopback does not return the data streamed")
            rates.append(len(data) / (((c1 - c0) % (1 << 32)) / clk_hz))
        stats = dev.link.stats
    return rates, stats


def _efficiency():
    wire = len(encode_frame(0x10, 0, bytes(1 + STREAM_CHUNK)))
    return STREAM_CHUNK / wire


def run(argv):
    """Run the stream benchmark with command-line options ``argv``; return the figures as a dict."""
    args = _parse(argv)
    data = random.Random(args.seed).randbytes(args.bytes)
    out = {"bytes_per_repeat": args.bytes, "window": args.window, "repeats": args.repeats,
           "baud": args.baud, "load_avg_1min": round(os.getloadavg()[0], 2)}
    capacity = args.baud / UART_BITS_PER_BYTE * _efficiency()
    out["paced_capacity_bytes_per_s"] = round(capacity)
    # The board and the relay run in processes of their own: the host's figures are its own.
    with _Child(_serve_model, args.fifo) as model:
        host, port = model.value
        for link in ("tcp", "paced"):
            for w in (1, *args.window):
                if link == "paced":
                    with _Child(_serve_relay, (host, port), args.baud) as relay:
                        rates, cpu, stats = _stream_model(relay.value, data, w, args.repeats)
                else:
                    rates, cpu, stats = _stream_model(f"socket://{host}:{port}", data, w,
                                                      args.repeats)
                key = f"{link}_w{w}"
                rate = statistics.median(rates)
                out[f"{key}_bytes_per_s"] = round(rate)
                out[f"{key}_slots_per_s"] = round(2 * rate)
                out[f"{key}_cpu_us_per_kb"] = round(statistics.median(cpu) * 1e9, 1)
                out[f"{key}_retries"] = stats.retries
                out[f"{key}_window_stalls"] = stats.window_stalls
                if link == "paced":
                    out[f"{key}_line_use"] = round(rate / capacity, 3)
            for w in args.window:
                out[f"{link}_w{w}_ratio"] = round(out[f"{link}_w{w}_bytes_per_s"]
                                                  / out[f"{link}_w1_bytes_per_s"], 2)
        # Alice's feeder through the paced link at a slot rate: does the FIFO stay fed?
        for period in args.slot_period:
            for w in (1, max(args.window)):
                with _Child(_serve_relay, (host, port), args.baud) as relay:
                    played, under, cpu = _feed(relay.value, w, period, args.feed_seconds)
                key = f"feed_p{period}_w{w}"
                out[f"{key}_slot_hz"] = round(48e6 / period)
                out[f"{key}_slots"] = played
                out[f"{key}_underflow_fraction"] = round(under / played, 4) if played else None
                out[f"{key}_cpu_s"] = round(cpu, 3)
    if args.rtl:
        from hil.twin import Twin
        rtl_data = data[:args.rtl_bytes]
        with Twin(Role.LINK) as twin:
            for w in (1, max(args.window)):
                rates, stats = _stream_rtl(twin.url, rtl_data, w, max(1, args.repeats // 2))
                out[f"rtl_w{w}_sim_bytes_per_s"] = round(statistics.median(rates))
                out[f"rtl_w{w}_retries"] = stats.retries
        out["rtl_ratio"] = round(out[f"rtl_w{max(args.window)}_sim_bytes_per_s"]
                                 / out["rtl_w1_sim_bytes_per_s"], 2)
        out["rtl_bytes_per_repeat"] = len(rtl_data)
    return out


if __name__ == "__main__":
    import sys
    print(json.dumps(run(sys.argv[1:])))
