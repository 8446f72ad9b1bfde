"""Benchmark of the host link: codec throughput, and the link's payload efficiency on the wire.

Figures (medians over ``--repeats``):

* ``frames_per_s``: max-size frames (MAX_PAYLOAD payload bytes) encoded and then decoded by the
  host codec per second, one frame counting once for its encode plus its decode.
* ``codec_mb_per_s``: payload megabytes (1e6 bytes) through encode plus decode per second.
* ``encode_frames_per_s``, ``decode_frames_per_s``: the two halves on their own.
* ``link_efficiency``: payload bits per UART bit-time for device-to-host stream frames at
  MAX_PAYLOAD, i.e. ``data bytes / wire bytes * 8 / UART_BITS_PER_BYTE`` (8N1: 10 bit-times per
  byte). The wire bytes are counted from what the behavioural board actually sent for a LOOPBACK
  stream over TCP, and checked against the framing arithmetic (``link_efficiency_expected``).
* ``payload_bytes_per_wire_byte``: the same without the UART's start and stop bits.
* ``payload_mbit_per_s_at_12mbaud``: stream data rate of a 12 Mbaud link, in Mbit/s.

Run ``qkdnode bench link --json`` or ``python -m bench.link``.
"""

import argparse
import json
import random
import socket
import statistics
import time

from controller.link.codec import FrameDecoder, encode_frame
from gateware.spec.cobs import cobs_max_encoded_len
from gateware.spec.protocol import (
    CRC_LEN, HEADER_LEN, MAX_PAYLOAD, UART_BITS_PER_BYTE, Opcode, StreamChannel,
)

BAUD = 12_000_000
DEFINITION = ("link_efficiency = stream data bits / UART bit-times on the wire for device-to-host "
              "stream frames at MAX_PAYLOAD (8N1: 10 bit-times per byte); wire bytes counted from "
              "the model's LOOPBACK stream over TCP")


def _parse(argv):
    parser = argparse.ArgumentParser(prog="qkdnode bench link", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames per codec repeat")
    parser.add_argument("--repeats", type=int, default=5, help="repeats; figures are medians")
    parser.add_argument("--stream-frames", type=int, default=64,
                        help="full stream frames looped back through the model per repeat")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random payloads")
    return parser.parse_args(argv)


def codec_throughput(frames, repeats, seed):
    """Return medians (frames/s) of encode+decode, encode alone and decode alone, max-size frames."""
    rng = random.Random(seed)
    payloads = [bytes(rng.getrandbits(8) for _ in range(MAX_PAYLOAD)) for _ in range(64)]
    both, enc, dec = [], [], []
    for _ in range(repeats):
        decoder = FrameDecoder()
        t0 = time.perf_counter()
        wire = b"".join([encode_frame(0x11, i & 0xFF, payloads[i & 63]) for i in range(frames)])
        t1 = time.perf_counter()
        got = decoder.feed(wire)
        t2 = time.perf_counter()
        assert len(got) == frames and decoder.errors == 0
        both.append(frames / (t2 - t0))
        enc.append(frames / (t1 - t0))
        dec.append(frames / (t2 - t1))
    return statistics.median(both), statistics.median(enc), statistics.median(dec)


def expected_efficiency():
    """Return (data bytes, wire bytes) of one full stream frame from the framing arithmetic."""
    data = MAX_PAYLOAD - 1                      # the payload's first byte is the channel
    frame = HEADER_LEN + MAX_PAYLOAD + CRC_LEN
    return data, cobs_max_encoded_len(frame) + 1   # + the 0x00 delimiter


def measured_efficiency(stream_frames, seed):
    """Loop full frames through the model over TCP; return (data bytes, stream frame wire bytes)."""
    from controller.device import Device
    from hil.model import ModelBoard, ModelServer

    rng = random.Random(seed)
    chunk = MAX_PAYLOAD - 1
    with ModelServer(ModelBoard()) as server:
        with Device(server.url, timeout=1.0) as dev:
            dev.write("core.control", loopback=1)
        loopback = StreamChannel.LOOPBACK.value
        h2d = Opcode.STREAM_H2D.value
        received = bytearray()
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            for i in range(stream_frames):
                data = bytes(rng.getrandbits(8) for _ in range(chunk))
                sock.sendall(encode_frame(h2d, i & 0xFF, bytes((loopback,)) + data))
                # One reply and one full loopback frame come back per request: wait for both.
                while received.count(0) < 2 * (i + 1):
                    received += sock.recv(65536)
        data_bytes = wire_bytes = 0
        for body in bytes(received).split(b"\x00")[:-1]:
            frames = FrameDecoder().feed(body + b"\x00")
            if frames and frames[0].opcode == Opcode.STREAM_D2H.value:
                data_bytes += len(frames[0].payload) - 1
                wire_bytes += len(body) + 1
    return data_bytes, wire_bytes


def run(argv):
    """Run the link benchmark with command-line options ``argv``; return the figures as a dict."""
    args = _parse(argv)
    fps, enc_fps, dec_fps = codec_throughput(args.frames, args.repeats, args.seed)
    data, wire = measured_efficiency(args.stream_frames, args.seed)
    exp_data, exp_wire = expected_efficiency()
    per_byte = data / wire
    efficiency = per_byte * 8 / UART_BITS_PER_BYTE
    expected = exp_data / exp_wire * 8 / UART_BITS_PER_BYTE
    if abs(efficiency - expected) > 1e-12:
        raise RuntimeError(f"measured link efficiency {efficiency} differs from the framing "
                           f"arithmetic {expected}: the model's stream frames are not full-size")
    return {
        "frames_per_s": round(fps, 1),
        "codec_mb_per_s": round(fps * MAX_PAYLOAD / 1e6, 3),
        "encode_frames_per_s": round(enc_fps, 1),
        "decode_frames_per_s": round(dec_fps, 1),
        "link_efficiency": round(efficiency, 6),
        "link_efficiency_expected": round(expected, 6),
        "link_efficiency_definition": DEFINITION,
        "payload_bytes_per_wire_byte": round(per_byte, 6),
        "stream_data_bytes_per_frame": exp_data,
        "stream_wire_bytes_per_frame": exp_wire,
        "payload_mbit_per_s_at_12mbaud": round(BAUD / UART_BITS_PER_BYTE * per_byte * 8 / 1e6, 4),
        "measured_stream_frames": wire // exp_wire,
        "repeats": args.repeats,
        "frames_per_repeat": args.frames,
    }


if __name__ == "__main__":
    import sys
    print(json.dumps(run(sys.argv[1:])))
