"""The run loop of each role: sessions, blocks, commits, alarms and automatic recovery.

Alice leads.  Per block (one modulator run, ``block_slots`` slots):

    Alice -> {"prepare": n, "session", "n_slots", ...}   Bob clears and arms his tagger
    Bob   -> {"ready": true | false, "reason"}
    Alice plays the run                                  Bob's tagger records it
    Alice -> {"run": n, "played", "overrun"}             Bob collects the run's detections
    Bob   -> {"ok": true | false, "reason"}
    distillation (``protocol.alice_block`` / ``bob_block``)
    Bob   -> {"end": n, "secret_bits", "abort", "gen"}   TAGGED: all Bob sent in the block
    Alice    records the block PENDING (key and pad top-up, sealed, in her store)
    Alice -> {"end": n, "replenish": bits, "gen"}        TAGGED: all Alice sent in the block
    Bob      COMMITS: keys and top-up in one store transaction (the decision), then tops up
    Bob   -> {"committed": n, "gen"}                    TAGGED
    Alice    commits her pending block, then tops up

Bob's commit is the decision: a block exists iff Bob committed it, and Alice commits only after
Bob's tagged "committed" (or his answer at the next connection).  ``gen`` is the number of pad
top-ups each end applied (:attr:`AuthKeyPool.generation`), checked equal at every block end.  A
link drop or a crash anywhere in this exchange leaves Alice at most one pending block: when the
channel is up again (its HELLO carries each end's generation), Alice's first message is
``{"sync": [pending block IDs], "gen"}`` (TAGGED) and Bob answers ``{"synced", "committed": [...],
"dropped": [...], "gen"}`` (TAGGED), recording every block he had not committed as dropped so it
never will be; Alice commits or drops each one accordingly.  Top-ups are numbered and kept in the
store with the commit, so a crash between commit and top-up is repaired at restart
(:meth:`Node._apply_topups`).  Until Bob knows that Alice applied his last top-up, his pool does not
send with its pads (:meth:`AuthKeyPool.send_limit`).  ``fault_hook(point, n)`` is called at each
step of this exchange (:data:`FAULT_POINTS`; the fault tests drop the link or stop the node there).

The channel is opened ``deferred``: every other block-lane frame goes untagged and is checked by
the sender's next tag, so a block costs three one-time pads (384 bits), not one per message.  Each
end acts on a block (alarm, pads, commit) only after the peer's end-of-block tag verified, i.e.
after the peer's whole transcript of the block is authenticated; data that fails to parse before
that is treated as tampering.  ``figures["auth_bits_used"]`` is what the block cost in pads
(both directions, KME traffic in between included) and ``net_bits`` the key left after it.

Both stores get the block under the same block ID (``SESSION-n``), hence the same key IDs.
A block whose QBER or decoy statistics are over the thresholds yields no key and raises a
disturbance alarm (metrics and a log line with its figures; key material is never logged).
A channel failure (closed, timed out, tampered, replayed, reordered) voids the block, closes the
connection and reconnects; a board fault voids the block and reopens the board.  The time from
failure to the next completed block is the time to recover (``qkd_time_to_recover_seconds``,
and ``NodeStats.recoveries``), measured on ``clock``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from controller.channel import (AuthChannel, BlockAborted, ChannelAuthError, ChannelClosed,
                                ChannelError, ChannelListener, connect)
from controller.kms.kme import PeerKME, PeerUnavailable
from controller.kms.store import COMMITTED
from controller.kms.peer_channel import ChannelPeerKME, PeerKMEService

from controller.postprocess.peer import PeerInputError, peer_int, peer_json

from .boards import BoardFault
from .protocol import ALICE, BOB, BlockOutcome, Protocol, alice_block, bob_block

logger = logging.getLogger("qkdnode.node")
MAX_SESSION_ID = 64     # characters of Alice's session ID (she sends 12 hex digits)
ALARMS = ("qber", "decoy")
# where ``fault_hook`` is called, in the order of the end-of-block exchange (then the resolution)
FAULT_POINTS = ("bob:end_sent", "alice:end_received", "alice:prepared", "alice:end_sent",
                "bob:end_received", "bob:committed", "bob:topped_up", "bob:committed_sent",
                "alice:committed_received", "alice:committed", "alice:topped_up",
                "alice:sync_sent", "bob:sync_answered")


class Halt(BaseException):
    """Raised by a fault hook to stop the node where it is, as a crash would (nothing more saved)."""


class ProtocolMismatch(RuntimeError):
    """The two nodes are configured differently; the operator must fix one of them."""


def _mismatch_reason(alice: Protocol, alice_slots: int, bob: Protocol | None = None,
                     bob_slots: int = 0) -> str:
    """Return Bob's reason for refusing Alice's settings (``bob`` None: the part naming Alice's,
    which she checks against her own settings).  The settings are [protocol] of node.toml:
    the Protocol and block_slots (the slots of a block)."""
    head = f"protocol settings differ between the nodes (Alice {alice}, block_slots={alice_slots}; "
    return head if bob is None else head + (f"Bob {bob}, block_slots={bob_slots}); make "
                                            f"[protocol] the same in both node.toml")


class SwitchablePeer(PeerKME):
    """The peer KME over whichever channel is connected now (reservations fail while down)."""

    def __init__(self):
        self.current: ChannelPeerKME | None = None

    def reserve(self, request):
        peer = self.current
        if peer is None:
            raise PeerUnavailable("the classical channel to the peer node is down")
        return peer.reserve(request)


@dataclass
class NodeStats:
    """What a node has done; ``history`` holds one dict of figures per block (no key material)."""

    blocks: int = 0
    keyed: int = 0
    aborted: int = 0
    alarms: int = 0
    void: int = 0
    secret_bits: int = 0
    sifted_bits: int = 0
    auth_bits_used: int = 0
    replenished_bits: int = 0
    slots: int = 0
    sessions: int = 0
    history: list = field(default_factory=list)
    recoveries: list = field(default_factory=list)
    key_ids: list = field(default_factory=list)
    resolved: list = field(default_factory=list)      # half-done blocks settled at a reconnection


class Node:
    """One end of a link.  ``board``: ``AliceBoard``/``BobBoard``; ``store``: a ``KeyStore``;
    ``pool``: the channel's ``AuthKeyPool``; ``listen``/``connect_to``: (host, port).
    ``max_blocks`` (Alice): stop starting blocks after that many, keeping the channel (and so the
    KME agreement) up; ``clock`` measures block and recovery times (the bench's link time in
    tests and the demo)."""

    def __init__(self, role, board, proto: Protocol, block_slots: int, store, pool, *,
                 listen=None, connect_to=None, kme=None, metrics=None, clock=time.monotonic,
                 name=None, timeout_s=30.0, run_timeout_s=600.0, low_water_msgs=8192,
                 rng_seed=None, slot_hz=None, max_blocks=None, fault_hook=None):
        if role not in (ALICE, BOB):
            raise ValueError(f"role must be 'alice' or 'bob', got {role!r}")
        self.role, self.board, self.proto, self.block_slots = role, board, proto, block_slots
        self.store, self.pool, self.kme, self.metrics, self.clock = store, pool, kme, metrics, clock
        self.name = name or role
        self.listen, self.connect_to = listen, connect_to
        self.timeout_s, self.run_timeout_s, self.low_water_msgs = timeout_s, run_timeout_s, low_water_msgs
        self.slot_hz = slot_hz
        self.stats = NodeStats()
        self.peer = SwitchablePeer()
        if kme is not None:
            kme.peer = self.peer
        self.channel: AuthChannel | None = None
        self._service = None
        self._listener = (ChannelListener(role, pool, *listen, timeout=timeout_s, deferred=True)
                          if listen else None)
        self.address = self._listener.address if self._listener else None
        self._stop = threading.Event()
        self._thread = None
        self._down: dict[str, float] = {}
        self._lost: dict[str, int] = {}
        # public randomness (Cascade seed, verification points, Toeplitz seed): OS CSPRNG
        self._rng = np.random.default_rng(rng_seed if rng_seed is not None
                                          else int.from_bytes(os.urandom(16), "big"))
        self.session = None
        self.block_no = 0
        self.max_blocks = max_blocks
        self.error: BaseException | None = None
        self._consumed_mark = pool.consumed_bits     # pad bits consumed up to the last block
        self._auth_owed = 0                          # pad bits used and not yet replenished
        self.fault_hook = fault_hook
        self._apply_topups()                         # a crash may have left one committed, not applied

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> "Node":
        self._thread = threading.Thread(target=self.run, name=f"node-{self.name}", daemon=True)
        self._thread.start()
        return self

    def signal_stop(self) -> None:
        """Ask the run loop to end after the current step, closing nothing yet.  Signal both
        ends of a link before stopping either: the peer's close is then no lost channel."""
        self._stop.set()

    def stop(self, timeout=30.0) -> None:
        """Stop after the current step; close the channel and the board (not the store)."""
        self._stop.set()
        self._drop_channel()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._listener is not None:
            self._listener.close()
        self.board.close()

    def run(self) -> None:
        """Run blocks until :meth:`stop`; recover from channel and board faults by themselves."""
        logger.info("%s: node starting as %s", self.name, self.role)
        try:
            while not self._stop.is_set():
                if not self._ensure_channel():
                    continue
                if self.role == ALICE and self.max_blocks is not None and \
                        self.stats.blocks >= self.max_blocks:
                    self._stop.wait(0.1)            # idle: the channel stays up for the KMEs
                    continue
                try:
                    if self.role == ALICE:
                        self._alice_block()
                    else:
                        self._bob_block()
                except ChannelError as exc:
                    if self._stop.is_set():
                        break
                    self._channel_failed(exc)
                except BoardFault as exc:
                    if self._stop.is_set():
                        break
                    self._board_failed(exc)
                except (ValueError, IndexError, KeyError, TypeError) as exc:
                    # unauthenticated block data that does not parse was altered on the way
                    ch = self.channel
                    if self._stop.is_set() or ch is None or not ch.unverified:
                        raise
                    logger.debug("%s: malformed block data", self.name, exc_info=True)
                    self._channel_failed(ch.suspect(f"block data from the peer is malformed "
                                                    f"({type(exc).__name__}: {exc})"))
        except ProtocolMismatch as exc:
            self.error = exc
            logger.error("%s: %s", self.name, exc)
        except Halt as exc:
            logger.warning("%s: halted at %s", self.name, exc)
        except Exception as exc:  # noqa: BLE001 - reported to whoever started the node
            if not self._stop.is_set():
                self.error = exc
                logger.exception("%s: node stopped by an unexpected error", self.name)
        finally:
            self._drop_channel()

    # -- faults and recovery ----------------------------------------------------------------------

    def _mark_down(self, link: str, lost: int = 1) -> None:
        self._down.setdefault(link, self.clock())
        self._lost[link] = self._lost.get(link, 0) + lost
        if self.metrics is not None:
            self.metrics.link_down(link)

    def _mark_recovered(self) -> None:
        """A block completed: every link that was down is up again."""
        for link, since in list(self._down.items()):
            seconds = self.clock() - since
            self.stats.recoveries.append({"link": link, "seconds": seconds,
                                          "blocks_lost": self._lost.get(link, 0)})
            logger.info("%s: %s recovered in %.3f s (%d block(s) lost)", self.name, link, seconds,
                        self._lost.get(link, 0))
            if self.metrics is not None:
                self.metrics.link_up(link)
            del self._down[link]
            self._lost.pop(link, None)

    def _channel_failed(self, exc: ChannelError) -> None:
        self.stats.void += 1
        if isinstance(exc, ChannelAuthError):
            logger.warning("%s: channel authentication failure, block voided: %s", self.name, exc)
            if self.metrics is not None:
                self.metrics.record_disturbance("channel_tamper")
        else:
            logger.warning("%s: classical channel lost (%s); reconnecting", self.name, exc)
        self._mark_down("channel")
        self._drop_channel()

    def _board_failed(self, exc: BoardFault) -> None:
        self.stats.void += 1
        logger.warning("%s: board fault, block voided: %s; reopening the board", self.name, exc)
        self._mark_down("board")
        self.board.close()
        self._stop.wait(0.05)

    def _drop_channel(self) -> None:
        self.peer.current = None
        if self._service is not None:
            self._service.stop()
            self._service = None
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def _ensure_channel(self) -> bool:
        if self.channel is not None and not self.channel.closed:
            return True
        if self.channel is not None and not self._stop.is_set():
            # the link died between blocks (or during the peer's end of a block): no block lost
            logger.warning("%s: classical channel lost (%s); reconnecting", self.name,
                           self.channel.last_error or "closed")
            self._mark_down("channel", lost=0)
        self._drop_channel()
        try:
            if self._listener is not None:
                ch = self._listener.accept(timeout=0.5)
            else:
                ch = connect(self.role, self.pool, *self.connect_to,
                             timeout=self.timeout_s, deferred=True)
        except (ChannelError, OSError) as exc:
            if not self._listener:
                logger.debug("%s: peer not reachable yet: %s", self.name, exc)
                self._stop.wait(0.2)
            return False
        self.channel = ch
        if self.role == ALICE:
            try:
                self._resolve()
            except ChannelError as exc:
                if not self._stop.is_set():
                    self._channel_failed(exc)
                return False
        if self.kme is not None:                     # after the resolution: both stores agree
            self._service = PeerKMEService(ch, self.kme).start()
            self.peer.current = ChannelPeerKME(ch, timeout=self.timeout_s)
        self.stats.sessions += 1
        if self.metrics is not None:
            self.metrics.link_up("peer")
        logger.info("%s: authenticated channel to the peer is up", self.name)
        if self.role == ALICE:
            self.session = uuid.uuid4().hex[:12]
            self.block_no = 0
        return True

    # -- messages ---------------------------------------------------------------------------------

    def _send(self, obj, checkpoint=False) -> None:
        if self.channel is None:
            raise ChannelClosed("the channel is closed")
        self.channel.send(self.role, json.dumps(obj).encode(), tag="node", checkpoint=checkpoint)

    def _recv(self, timeout=None, checkpoint=False) -> dict:
        if self.channel is None:
            raise ChannelClosed("the channel is closed")
        return peer_json(self.channel.recv(self.role, timeout=timeout, checkpoint=checkpoint),
                         f"a message from {self.channel.peer}")

    def _fault(self, point: str, n: int) -> None:
        if self.fault_hook is not None:
            self.fault_hook(point, n)

    # -- half-done blocks: the resolution at (re)connection ---------------------------------------

    def _apply_topups(self) -> None:
        """Bring the pads to the store: apply committed top-ups the pool has not saved yet."""
        for gen, block_id, bits in self.store.topups(self.pool.fingerprint):
            self.pool.top_up(gen, bits)
            self.store.forget_topup(block_id)
        if self.metrics is not None:
            self.metrics.update_pad_generation(self.pool.generation)

    def _pads_out_of_step(self, peer_gen) -> ProtocolMismatch:
        return ProtocolMismatch(
            f"the channel's pads are out of step with the peer's: this end applied "
            f"{self.pool.generation} top-ups, the peer {peer_gen}, with no half-done block to "
            f"explain it (a channel state file or key store restored from an old copy?); "
            f"reprovision the pre-shared secret on both ends")

    def _resolve(self) -> None:
        """Alice, on a new channel: settle the blocks left pending with Bob (his store decides)."""
        pending = self.store.pending_blocks()
        peer_gen = self.channel.peer_generation
        if not pending:
            if peer_gen is not None and peer_gen != self.pool.generation:
                raise self._pads_out_of_step(peer_gen)
            return
        logger.info("%s: settling %d half-done block(s) with the peer: %s", self.name,
                    len(pending), pending)
        self._send({"sync": pending, "gen": self.pool.generation}, checkpoint=True)
        self._fault("alice:sync_sent", -1)
        msg = self._recv(checkpoint=True)
        committed, dropped = msg.get("committed"), msg.get("dropped")
        if not (msg.get("synced") and isinstance(committed, list) and isinstance(dropped, list)
                and sorted(committed + dropped) == sorted(pending)):
            raise ChannelError(f"protocol out of step: Bob's answer does not settle {pending}: {msg}")
        for block_id in pending:
            if block_id in committed:
                ids = self.store.commit_pending(block_id)
                self.stats.key_ids.extend(ids)
                outcome = "committed"
            else:
                self.store.drop_block(block_id)
                outcome = "dropped"
            self.stats.resolved.append({"block": block_id, "outcome": outcome})
            logger.info("%s: half-done block %s %s (Bob's decision)", self.name, block_id, outcome)
            if self.metrics is not None:
                self.metrics.record_resolution(outcome)
        self._apply_topups()
        gen = int(msg.get("gen", -1))
        if gen != self.pool.generation:
            raise self._pads_out_of_step(gen)
        self.pool.note_peer_generation(gen)

    def _bob_sync(self, msg) -> None:
        """Bob: answer Alice's sync; every block not committed here is dropped for good."""
        blocks = msg["sync"]
        if not (isinstance(blocks, list) and all(isinstance(b, str) for b in blocks)):
            raise ChannelError(f"protocol out of step: a sync naming {blocks!r}")
        committed, dropped = [], []
        for block_id in blocks:
            outcome = self.store.drop_block(block_id)
            (committed if outcome == COMMITTED else dropped).append(block_id)
            self.stats.resolved.append({"block": block_id, "outcome": outcome})
            if self.metrics is not None:
                self.metrics.record_resolution(outcome)
        self._send({"synced": True, "committed": committed, "dropped": dropped,
                    "gen": self.pool.generation}, checkpoint=True)
        self._fault("bob:sync_answered", -1)

    # -- Alice ------------------------------------------------------------------------------------

    def _alice_block(self) -> None:
        n = self.block_no
        self.block_no += 1
        w = time.perf_counter()
        self._send({"prepare": n, "session": self.session, "n_slots": self.block_slots,
                    "protocol": self.proto.to_json()})
        reply = self._recv(self.run_timeout_s)
        if not reply.get("ready"):
            if reply.get("fatal") and not self.channel.last_tagged:
                # Bob sends a fatal refusal tagged: an untagged one was altered on the way
                raise self.channel.suspect("an unauthenticated fatal refusal from Bob")
            if reply.get("fatal") and not str(reply.get("reason", "")).startswith(
                    _mismatch_reason(self.proto, self.block_slots)):
                # Bob saw other settings than Alice sent: her (untagged) prepare was altered;
                # the ABORT this sends tells Bob so (see Node._settle_mismatch)
                raise self.channel.suspect("Bob refuses settings Alice did not send")
            raise ProtocolMismatch(reply.get("reason", "Bob refused the block")) \
                if reply.get("fatal") else BoardFault(f"Bob is not ready: {reply.get('reason')}")
        t0 = self.clock()
        try:
            record, _first = self.board.run_block(self.block_slots, self._stop)
        except BoardFault as exc:
            self._send({"void": n, "reason": str(exc)})
            raise
        overrun = int(getattr(self.board, "overrun", {}).get("slots", 0))   # link time past the block
        self._send({"run": n, "played": int(record.bits.size), "overrun": overrun})
        got = self._recv(self.run_timeout_s)
        if not got.get("ok"):
            self._finish_void(n, f"Bob: {got.get('reason')}", link="board")
            return
        acquire = time.perf_counter() - w
        w = time.perf_counter()
        outcome = alice_block(self.channel, record, self.proto, self._rng)
        outcome.figures["distill_wall_s"] = round(time.perf_counter() - w, 3)
        outcome.figures["acquire_wall_s"] = round(acquire, 3)
        outcome.figures["overrun_slots"] = overrun
        self._conclude(n, outcome, t0, record.bits.size + overrun)

    # -- Bob --------------------------------------------------------------------------------------

    def _bob_block(self) -> None:
        msg = self._recv(self.run_timeout_s)
        if "sync" in msg:
            if not self.channel.last_tagged:
                # Alice sends her sync tagged; acting on an untagged one would drop blocks
                raise self.channel.suspect("an unauthenticated sync from Alice")
            self._bob_sync(msg)
            return
        if "prepare" not in msg:
            # not authenticated yet: altered on the way, as block data that does not parse (run)
            raise self.channel.suspect(f"protocol out of step: expected a block, got {sorted(msg)}")
        n, self.session, theirs = self._prepare_fields(msg)
        n_slots = peer_int(msg.get("n_slots"), "Alice's block length (slots)", 1)
        if theirs != self.proto or n_slots != self.block_slots:
            # other settings, or the (untagged) prepare was altered: Alice tells which
            self._send({"ready": False, "fatal": True, "reason": _mismatch_reason(
                theirs, n_slots, self.proto, self.block_slots)}, checkpoint=True)
            self._settle_mismatch()
        try:
            self.board.arm()
        except BoardFault as exc:
            self._send({"ready": False, "reason": str(exc)})
            raise
        self._send({"ready": True})
        t0 = self.clock()
        msg = self._recv(self.run_timeout_s)
        if "void" in msg:
            self._finish_void(n, f"Alice: {msg.get('reason')}", link="board")
            return
        played = peer_int(msg.get("played"), f"slots Alice played of a block of {n_slots}", 1, n_slots)
        overrun = peer_int(msg.get("overrun", 0), "slots Alice played past the block", 0)
        try:
            det = self.board.collect(played, timeout_s=self.timeout_s, stop_event=self._stop)
        except BoardFault as exc:
            self._send({"ok": False, "reason": str(exc)})
            raise
        self._send({"ok": True})
        w = time.perf_counter()
        outcome = bob_block(self.channel, det, self.proto)
        outcome.figures["distill_wall_s"] = round(time.perf_counter() - w, 3)
        outcome.figures["overrun_slots"] = overrun
        self._conclude(n, outcome, t0, played + overrun)

    def _settle_mismatch(self) -> None:
        """Bob, after refusing other settings: the prepare naming them was not authenticated.
        Alice checks the refusal (tagged) against her own settings: if Bob saw others, her
        prepare was altered and she aborts the block (tampering here too, the node goes on);
        if not, she stops and closes the channel, and Bob stops as well."""
        try:
            self._recv(self.timeout_s)
        except BlockAborted:
            raise self.channel.suspect("Alice aborted the block Bob refused: her prepare named "
                                       "other settings than she sent") from None
        except ChannelError:
            pass
        raise ProtocolMismatch("protocol settings differ from Alice's; fix [protocol] in node.toml")

    def _prepare_fields(self, msg: dict) -> tuple[int, str, Protocol]:
        """Return (block number, session ID, Alice's protocol settings) of a prepare, checked."""
        n = peer_int(msg["prepare"], "Alice's block number", 0)
        session = msg.get("session")
        if not (isinstance(session, str) and 0 < len(session) <= MAX_SESSION_ID
                and session.isascii() and session.isalnum()):
            raise PeerInputError(f"Alice's session ID: expected 1..{MAX_SESSION_ID} letters and "
                                 f"digits, got {session!r:.80}")
        try:
            theirs = Protocol.from_json(msg.get("protocol"))
        except (TypeError, KeyError, ValueError) as exc:
            raise PeerInputError(f"Alice's protocol settings do not parse ({type(exc).__name__}: "
                                 f"{exc})") from None
        return n, session, theirs

    # -- the end of a block -----------------------------------------------------------------------

    def _finish_void(self, n, reason, *, link):
        self.stats.void += 1
        logger.warning("%s: block %s-%s void: %s", self.name, self.session, n, reason)
        self._mark_down(link)

    def _replenish_bits(self, key_bits: int) -> int:
        """Alice's choice of key bits to move into the pads: what the channel used since the last
        top-up (so the pre-shared budget is kept), more when either direction is below
        ``low_water_msgs``; at most half of the block's key, in whole pad pairs (256 bits)."""
        left = min(self.pool.budget().remaining_messages.values())
        want = max(self._auth_owed, max(0, self.low_water_msgs - left) * 256, 0)
        return min(-(-want // 256) * 256, key_bits // 2 // 256 * 256)

    def _end_of_block(self, n, outcome: BlockOutcome, block_id: str) -> int:
        """Authenticate both transcripts of block ``n`` (one tag each way); return the key bits
        both ends move into the channel's pads.  Alice records the block pending before her tag."""
        gen = self.pool.generation
        if self.role == BOB:
            self._send({"end": n, "secret_bits": outcome.secret_bits, "abort": outcome.abort,
                        "gen": gen}, checkpoint=True)
            self._fault("bob:end_sent", n)
            msg = self._recv(checkpoint=True)
            r = int(msg.get("replenish", -1))
            if msg.get("end") != n or not 0 <= r <= outcome.secret_bits:
                raise ChannelError(f"protocol out of step at the end of block {n}: {msg}")
            if msg.get("gen") != gen:
                raise ChannelError(f"pads out of step at the end of block {n}: Alice applied "
                                   f"{msg.get('gen')} top-ups, Bob {gen}")
            self.pool.note_peer_generation(gen)
            self._fault("bob:end_received", n)
            return r
        msg = self._recv(checkpoint=True)       # its tag covers all Bob sent in this block
        if msg.get("end") != n or msg.get("secret_bits") != outcome.secret_bits:
            raise ChannelError(f"the nodes disagree on block {n}: Bob {msg}, Alice "
                               f"{outcome.secret_bits} secret bits ({outcome.abort})")
        if msg.get("gen") != gen:
            raise ChannelError(f"pads out of step at the end of block {n}: Bob applied "
                               f"{msg.get('gen')} top-ups, Alice {gen}")
        self.pool.note_peer_generation(gen)
        self._fault("alice:end_received", n)
        r = self._replenish_bits(outcome.secret_bits) if outcome.key is not None else 0
        if outcome.key is not None:
            keys, topup = self._split(outcome.key, r)
            self.store.prepare_block(block_id, keys, topup=topup, gen=gen + 1 if r else None,
                                     pool=self.pool.fingerprint)
            self._fault("alice:prepared", n)
        self._send({"end": n, "replenish": r, "gen": gen}, checkpoint=True)
        self._fault("alice:end_sent", n)
        return r

    def _split(self, key: np.ndarray, r: int) -> tuple[bytes, bytes]:
        """Return (the whole keys' bytes, the pad top-up's bytes) of a block's key bits."""
        stored = key[r:]
        usable = stored.size // self.store.key_size * self.store.key_size
        return np.packbits(stored[:usable]).tobytes(), np.packbits(key[:r]).tobytes() if r else b""

    def _conclude(self, n, outcome: BlockOutcome, t0, slots) -> None:
        block_id = f"{self.session}-{n}"
        fig = dict(outcome.figures)
        key = outcome.key
        r = self._end_of_block(n, outcome, block_id)
        if key is not None:
            gen = self.pool.generation + 1 if r else self.pool.generation
            if self.role == BOB:
                keys, topup = self._split(key, r)
                ids = self.store.commit_block(block_id, keys, topup=topup,
                                              gen=gen if r else None, pool=self.pool.fingerprint)
                self._fault("bob:committed", n)
                self._apply_topups()
                self._fault("bob:topped_up", n)
                self._send({"committed": n, "gen": self.pool.generation}, checkpoint=True)
                self._fault("bob:committed_sent", n)
            else:
                msg = self._recv(checkpoint=True)
                if msg.get("committed") != n or msg.get("gen") != gen:
                    raise ChannelError(f"Bob did not confirm the commit of block {n} "
                                       f"(top-up {gen}): {msg}")
                self._fault("alice:committed_received", n)
                ids = self.store.commit_pending(block_id)
                self._fault("alice:committed", n)
                self._apply_topups()
                self.pool.note_peer_generation(gen)
                self._fault("alice:topped_up", n)
            self.stats.key_ids.extend(ids)
            self._auth_owed -= r
            fig["replenished_bits"] = r
            fig["keys"] = len(ids)
        used = self.pool.consumed_bits - self._consumed_mark
        self._consumed_mark = self.pool.consumed_bits
        self._auth_owed += used
        fig["auth_bits_used"] = int(used)
        fig["net_bits"] = outcome.secret_bits - int(used)
        duration = (self.clock() - t0)
        sim_s = slots / self.slot_hz if self.slot_hz else duration
        fig.update({"block": block_id, "slots": int(slots), "seconds": sim_s,
                    "abort": outcome.abort, "secret_bits": outcome.secret_bits})
        st = self.stats
        st.blocks += 1
        st.slots += int(slots)
        st.sifted_bits += int(fig.get("sifted_bits", 0))
        st.auth_bits_used += fig["auth_bits_used"]
        st.replenished_bits += int(fig.get("replenished_bits", 0))
        st.history.append(fig)
        alarm = outcome.abort in ALARMS
        if key is not None:
            st.keyed += 1
            st.secret_bits += outcome.secret_bits
        elif alarm:
            st.aborted += 1
            st.alarms += 1
            logger.warning("%s: DISTURBANCE ALARM: block %s aborted (%s): QBER_X %.4f, QBER_Z %s, "
                           "n_key %s, n_test %s, s1 %s, phi %s; no key from this block", self.name,
                           block_id, outcome.abort, fig.get("qber_x", float("nan")),
                           fig.get("qber_z"), fig.get("n_key"), fig.get("n_test"), fig.get("s1"),
                           fig.get("phi"))
        else:
            logger.info("%s: block %s gave no key (%s): %s", self.name, block_id, outcome.abort,
                        {k: fig.get(k) for k in ("qber_x", "n_key", "secret_bits")})
        if key is not None:
            logger.info("%s: block %s: %d secret bits, QBER_X %.4f, QBER_Z %.4f", self.name,
                        block_id, outcome.secret_bits, fig.get("qber_x", 0), fig.get("qber_z", 0))
        if self.metrics is not None:
            self.metrics.record_block(sifted_bits=int(fig.get("sifted_bits", 0)),
                                      secret_bits=outcome.secret_bits, duration_s=sim_s,
                                      qber_z=fig.get("qber_z"), qber_x=fig.get("qber_x"),
                                      aborted=alarm, reason=outcome.abort if alarm else None,
                                      leaked_bits=fig.get("leak_ec_bits"),
                                      ec_efficiency=fig.get("ec_efficiency"),
                                      distill_s=fig.get("distill_wall_s"))
            self.metrics.update_store(self.store.status())
            self.metrics.update_channel(self.channel.figures())
            if self.kme is not None:
                self.metrics.update_kme(self.kme.counters)
        self._mark_recovered()
