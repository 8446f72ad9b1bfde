"""The host side of the board link: transports, the frame codec, the client and its errors.

``LinkClient(url)`` talks to a board over ``/dev/tty…``, ``socket://HOST:PORT`` or ``loop://``;
``controller.device.Device`` adds register names on top.
"""

from .client import LinkClient, LinkStats, STREAM_CHUNK
from .codec import Frame, FrameDecoder, crc16, decode_frame, encode_frame
from .errors import (
    CRCErrors, DeviceError, LinkError, NoResponse, ProtocolError, StreamStalled, TransportError,
    VersionMismatch, WrongDevice,
)
from .transport import DEFAULT_BAUD, Transport, open_transport

__all__ = [
    "LinkClient", "LinkStats", "STREAM_CHUNK",
    "Frame", "FrameDecoder", "crc16", "decode_frame", "encode_frame",
    "LinkError", "TransportError", "NoResponse", "CRCErrors", "DeviceError", "ProtocolError",
    "StreamStalled", "WrongDevice", "VersionMismatch",
    "DEFAULT_BAUD", "Transport", "open_transport",
]
