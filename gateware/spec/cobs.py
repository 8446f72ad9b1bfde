"""COBS (consistent overhead byte stuffing), the reference codec shared by host and tests.

Pure Python: the host link codec imports it from here and the gateware tests use it as the
golden model for ``gateware.cores.cobs``. Encoding follows Cheshire & Baker: a code byte ``c``
is followed by ``c - 1`` non-zero data bytes and stands for an implicit zero after them, except
when ``c == 0xFF`` or the block is the last of the frame. A frame that ends exactly on a full
(0xFF) block gets no further code byte, as the gateware encoder does; the decoder also accepts
the redundant trailing ``0x01`` other encoders emit there. Neither function handles the 0x00
delimiter: framing is the caller's job.
"""

__all__ = ["cobs_encode", "cobs_decode", "cobs_max_encoded_len"]


def cobs_max_encoded_len(n):
    """Return the longest COBS encoding of an ``n``-byte frame, in bytes, without delimiter."""
    return n + 1 + n // 254


def cobs_encode(data):
    """Return the COBS encoding of ``data`` (bytes-like), which contains no 0x00 byte.

    Works a zero-free run at a time (``bytes.split``), so its cost is per block, not per byte.
    A frame ending exactly on a full 254-byte block gets no trailing 0x01 code, as the gateware
    encoder does.
    """
    out = bytearray()
    parts = bytes(data).split(b"\x00")
    last = len(parts) - 1
    for i, part in enumerate(parts):
        n, start = len(part), 0
        while n - start >= 254:
            out.append(0xFF)
            out += part[start:start + 254]
            start += 254
        # The run's final block: needed unless the run ended on a full block at the frame end.
        if start < n or i < last or n == 0:
            out.append(n - start + 1)
            out += part[start:]
    return bytes(out)


def cobs_decode(data):
    """Return the frame that ``data`` (one COBS-encoded frame, delimiter stripped) encodes.

    Raises ``ValueError`` if ``data`` is empty, contains a 0x00 byte, or ends inside a block.
    """
    data = bytes(data)
    if not data:
        raise ValueError("COBS: cannot decode an empty frame; expected at least one code byte")
    out = bytearray()
    index = 0
    while index < len(data):
        code = data[index]
        if code == 0:
            raise ValueError(f"COBS: 0x00 at offset {index}; a delimiter must not appear "
                             f"inside an encoded frame (split frames at 0x00 first)")
        end = index + code
        if end > len(data):
            raise ValueError(f"COBS: code byte 0x{code:02X} at offset {index} announces "
                             f"{code - 1} data bytes but only {len(data) - index - 1} follow; "
                             f"the frame is truncated")
        block = data[index + 1:end]
        if 0 in block:
            raise ValueError(f"COBS: 0x00 at offset {index + 1 + block.index(0)}; a delimiter "
                             f"must not appear inside an encoded frame")
        out += block
        index = end
        if code != 0xFF and index < len(data):
            out.append(0)
    return bytes(out)
