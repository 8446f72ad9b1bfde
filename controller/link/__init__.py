"""The host side of the board link: transports, the frame codec, the client and its errors.

``LinkClient(url)`` talks to a board over ``/dev/tty…``, ``socket://HOST:PORT`` or ``loop://``;
``controller.device.Device`` adds register names on top.
"""

from .client import DEFAULT_WINDOW, LinkClient, LinkStats, STREAM_CHUNK
from .codec import Frame, FrameDecoder, crc16, decode_frame, encode_frame
from .errors import (
    CRCErrors, DeviceError, LinkError, NoResponse, ProtocolError, StreamOrderError, StreamStalled,
    StreamUncertain, TransportError, VersionMismatch, WrongDevice,
)
from .transport import DEFAULT_BAUD, Transport, open_transport

__all__ = [
    "LinkClient", "LinkStats", "STREAM_CHUNK", "DEFAULT_WINDOW",
    "Frame", "FrameDecoder", "crc16", "decode_frame", "encode_frame",
    "LinkError", "TransportError", "NoResponse", "CRCErrors", "DeviceError", "ProtocolError",
    "StreamStalled", "StreamOrderError", "StreamUncertain", "WrongDevice", "VersionMismatch",
    "DEFAULT_BAUD", "Transport", "open_transport",
]
