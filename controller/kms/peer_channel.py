"""The KME-to-KME agreement over the authenticated classical channel.

:class:`ChannelPeerKME` is the :class:`~controller.kms.kme.PeerKME` the ``enc_keys`` path calls;
:class:`PeerKMEService` answers the peer's reservations with the local :class:`~controller.kms.kme.KME`.
Requests travel on lane ``LANE_KME_REQ`` and answers on ``LANE_KME_REP`` of an
:class:`~controller.channel.AuthChannel`, as JSON (byte strings base64); every frame is authenticated
by the channel, so a forged reservation or a forged ML-KEM ciphertext is refused there.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import threading

from controller.channel import LANE_KME_REP, LANE_KME_REQ, AuthChannel, ChannelClosed, ChannelError

from .kme import KME, PeerKME, PeerRefused, PeerUnavailable, ReserveReply, ReserveRequest

logger = logging.getLogger(__name__)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


class ChannelPeerKME(PeerKME):
    """Reserve keys on the peer KME through the authenticated channel (one request at a time)."""

    def __init__(self, channel: AuthChannel, timeout: float = 10.0):
        self.channel, self.timeout = channel, timeout
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def reserve(self, request: ReserveRequest) -> ReserveReply:
        with self._lock:
            rid = next(self._ids)
            msg = {"id": rid, "op": "reserve", "source": request.source_kme_id,
                   "key_ids": list(request.key_ids), "master": request.master_sae,
                   "slave": request.slave_sae, "size": request.size_bits, "kem_ek": _b64(request.kem_ek)}
            try:
                self.channel.send_on(LANE_KME_REQ, json.dumps(msg).encode())
                while True:
                    reply = json.loads(self.channel.recv_on(LANE_KME_REP, self.timeout))
                    if reply.get("id") == rid:
                        break
                    logger.debug("dropping a late peer-KME answer (id %s)", reply.get("id"))
            except ChannelError as exc:
                raise PeerUnavailable(f"no answer from the peer KME: {exc}") from None
            except ValueError:
                raise PeerUnavailable("the peer KME answered something that is not JSON") from None
        if not reply.get("ok"):
            raise PeerRefused(str(reply.get("reason", "refused")),
                              [str(k) for k in reply.get("unavailable") or []])
        return ReserveReply(_unb64(reply.get("kem_ct")))


class PeerKMEService:
    """Serve the peer KME's reservations from the channel in a background thread."""

    def __init__(self, channel: AuthChannel, kme: KME):
        self.channel, self.kme = channel, kme
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"peer-kme-{kme.config.kme_id}",
                                        daemon=True)

    def start(self) -> "PeerKMEService":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def handle(self, body: bytes) -> dict:
        """Return the answer to one request."""
        try:
            msg = json.loads(body)
            request = ReserveRequest(str(msg["source"]), tuple(map(str, msg["key_ids"])),
                                     str(msg["master"]), str(msg["slave"]), int(msg["size"]),
                                     _unb64(msg.get("kem_ek")))
        except (ValueError, KeyError, TypeError):
            return {"id": None, "ok": False, "reason": "malformed reservation request"}
        try:
            reply = self.kme.handle_reserve(request)
        except PeerRefused as exc:
            return {"id": msg["id"], "ok": False, "reason": str(exc), "unavailable": exc.unavailable}
        return {"id": msg["id"], "ok": True, "kem_ct": _b64(reply.kem_ct)}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                body = self.channel.recv_on(LANE_KME_REQ, timeout=0.2)
            except ChannelClosed:
                return
            except ChannelError:
                continue
            try:
                self.channel.send_on(LANE_KME_REP, json.dumps(self.handle(body)).encode())
            except ChannelError as exc:
                logger.warning("cannot answer the peer KME: %s", exc)
