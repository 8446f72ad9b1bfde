"""``qkdnode demo``: the project's main job, end to end on this machine.

Starts a simulated bench (the project's ``hil.testbed.Testbed``: two behavioural boards on
loopback TCP joined by ``hil.fibre`` and the optics model, 25 km of fibre by default, optionally an
intercept-resend eavesdropper, driven on simulated time), both node controllers
over the authenticated classical channel, both KMEs with a development PKI (HTTPS, mutual TLS),
shows live progress, then acts as two SAEs: ``enc_keys`` on Alice's KME, ``dec_keys`` on Bob's,
checks that the keys match and returns a summary (:class:`DemoResult`).
"""

from __future__ import annotations

import base64
import json
import math
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from controller.alice import unpack_choices
from controller.node.protocol import Protocol
from gateware.spec.registers import Role
from hil.model import CLK_HZ, AliceBlock, ModelBoard, ModelServer
from hil.optics.clicks import RunResult

__all__ = ["SimBench", "TestbedBench", "RecordingAliceBlock", "DemoResult", "run_demo", "link_plan",
           "release", "RTL_DEFAULTS"]

#: ``qkdnode demo --board rtl``'s link, chosen so that one block makes key in minutes.  The twin
#: simulates some 65 000-100 000 clock cycles per CPU second, and Bob's UART (12 Mbaud at 48 MHz)
#: carries one event record per ~165 cycles (``bench.tagger.link_limit``): a block costs about
#: 165 cycles per detection whatever the link, so the link is short and the detectors good
#: (0 km, 90 %: few slots per detection), the slot as short as the UART allows at this click
#: probability (~0.2 per slot: 40 cycles, 1.2 Mslot/s), and the block the smallest that leaves
#: key after the finite-key bound with margin (the model: none below n_Z ~ 35 000).
#: ``stretch_frames``: frames handed to the twin at a time (each stretch costs it a gap of two
#: frames).
RTL_DEFAULTS = {"distance_km": 0.0, "block_size": 50_000, "blocks": 1, "efficiency": 0.9,
                "slot_period": 40, "stretch_frames": 32}
# -- the simulated bench --------------------------------------------------------------------------

class RecordingAliceBlock(AliceBlock):
    """Alice's modulator model that hands every played slot to the bench (the fibre's input).

    The clock is the bench: slots are played only by ``advance`` (``clock=None``).
    """

    def __init__(self, board, **options):
        self.played = deque()        # ("start", first) | ("play", rel_first, bit, basis, intensity) | ("stop",)
        super().__init__(board, clock=None, **options)

    def reset(self):
        super().reset()
        if hasattr(self, "played"):
            self.played.append(("stop",))

    def _start(self, lfsr):
        self.played.append(("start", self.slot_no))
        super()._start(lfsr)

    def _stop(self):
        super()._stop()
        self.played.append(("stop",))

    def _play(self, n):
        if n > 0 and self.running and not self.lfsr_mode:
            have = min(n, 2 * len(self.fifo) - self.half)
            if have > 0:
                raw = bytes(self.fifo[:(self.half + have + 1) // 2])
                bit, basis, intensity = (a[self.half:self.half + have] for a in unpack_choices(raw))
                self.played.append(("play", self.slot_no - self.run_first, bit, basis, intensity))
        super()._play(n)


class SimBench:
    """Two model boards on loopback TCP joined by the optics model, on simulated time.

    Alice's board plays the slots her host streamed, as fast as the host streams them; the bench
    sends each played slot through ``OpticsModel`` (fibre, detectors, an optional eavesdropper) and,
    when her run stops, hands Bob's board the run's clicks and sync edges (in tagger bins).
    ``sim_seconds`` is the link time played so far (slots / slot rate).  The demo runs on the
    project's ``hil.testbed.Testbed`` (:class:`TestbedBench`); this smaller bench stays for the
    node's recovery tests because it survives a reset of either board (``reset_board``).
    """

    def __init__(self, *, distance_km=25.0, preset="lim2014", proto=None, slot_period=6,
                 frame_slots=1024, eve_fraction=0.0, seed=1, choices_depth=65_000, efficiency=None):
        from hil.optics import InterceptResend, OpticsModel, Source, Timing, preset as link_preset
        self.slot_period, self.frame_slots = slot_period, frame_slots
        self.slot_hz = CLK_HZ / slot_period
        proto = proto or Protocol()
        cfg = link_preset(preset, length_km=distance_km)
        period_ps = round(1e12 / self.slot_hz)
        cfg = cfg.with_(source=Source(proto.intensities, proto.probabilities, 1 - proto.p_x),
                        receiver=replace(cfg.receiver, p_z=1 - proto.p_x,
                                         efficiency=cfg.receiver.efficiency if efficiency is None
                                         else efficiency),
                        timing=Timing(slot_period_ps=period_ps, slots_per_frame=frame_slots))
        self.config = cfg
        attack = InterceptResend(eve_fraction) if eve_fraction > 0 else None
        self.optics = OpticsModel(cfg, seed=seed, attack=attack)
        # Alice's board with the recording modulator in place of the plain one
        self.alice_board = ModelBoard(role=Role.ALICE, alice_options={"clock": None})
        self.alice = RecordingAliceBlock(self.alice_board, choices_depth=choices_depth)
        board = self.alice_board
        board.blocks = [b for b in board.blocks if b is not board.alice] + [self.alice]
        board.alice = self.alice
        self.alice.reset()
        self.bob_board = ModelBoard(role=Role.BOB)
        self.servers = [ModelServer(self.alice_board), ModelServer(self.bob_board)]
        self.samples = self.bob_board.bob.samples
        self.bin_ps = period_ps / (slot_period * self.samples)
        self.slots_played = 0
        self._pending = []
        self._base = self._cursor = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sim-bench", daemon=True)

    @property
    def alice_url(self):
        return self.servers[0].url

    @property
    def bob_url(self):
        return self.servers[1].url

    @property
    def sim_seconds(self) -> float:
        """Return the link time played so far, in seconds."""
        return self.slots_played / self.slot_hz

    def start(self) -> "SimBench":
        for s in self.servers:
            s.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self.servers:
            s.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def optics_model(self):
        """The running optics model (config, VOA setting): what the model rate is planned from."""
        return self.optics

    def reset_board(self, which: str) -> None:
        """Reset Alice's or Bob's board, as a power glitch would (registers, FIFOs, runs)."""
        board = self.alice_board if which == "alice" else self.bob_board
        board.reset()

    def _loop(self):
        while not self._stop.is_set():
            with self.alice_board.lock:
                a = self.alice
                if a.running and a.fifo:
                    a.advance(2 * len(a.fifo) - a.half)
                items = list(a.played)
                a.played.clear()
            for item in items:
                if item[0] == "start":
                    # the optics' time only moves forward (detector dead time and afterpulses
                    # carry over); each run starts a fresh frame grid there
                    self._base = self._cursor + self.frame_slots
                    self._pending = []
                elif item[0] == "play":
                    _, rel, bit, basis, intensity = item
                    self.optics.next_slot = self._base + rel
                    self._pending.append(self.optics.run(bit, basis, intensity))
                    self._cursor = self.optics.next_slot
                    self.slots_played += len(bit)
                elif item[0] == "stop" and self._pending:
                    self._inject(self._pending)
                    self._pending = []
            if not items:
                self._stop.wait(0.01)

    def _inject(self, parts):
        res = RunResult.concatenate(parts)
        clicks = res.clicks
        # half a slot late: a click sits mid-slot, never on a bin boundary with its sync
        t = np.rint((clicks.time_ps + self.slot_period * self.samples * self.bin_ps / 2)
                    / self.bin_ps).astype(np.int64)
        per_channel = [np.sort(t[clicks.channel == ch]) for ch in range(4)]
        period_ps = self.config.timing.slot_period_ps
        frames = np.arange(-(-(res.end_slot - self._base) // self.frame_slots))
        sync_ps = (self._base + frames * self.frame_slots) * period_ps + self.config.fibre.delay_ps()
        syncs = np.rint(sync_ps / self.bin_ps).astype(np.int64)
        self.bob_board.bob.inject(per_channel, syncs)
        # the run's light has stopped; Bob's clock runs on: his last frame ends with sync lost
        self.bob_board.bob.idle()


class TestbedBench:
    """The project's ``hil.testbed.Testbed`` (boards, ``hil.fibre``, SCPI instruments) behind
    the interface the demo uses, on simulated time like :class:`SimBench`.

    ``board="model"``: behavioural boards; a driver thread plays what Alice's host has streamed
    (``Testbed.advance``) and hands Bob the rest of a run when it stops (``Testbed.flush``).
    ``board="rtl"``: Bob's board is his gateware in Verilator (``hil.twin``), his detector and
    sync pins driven from the fibre, ``stretch_frames`` frames at a time; Alice stays the
    behavioural model, driven as above (the twin's clock only runs on light and host traffic),
    unless ``alice="rtl"``: her twin too, its pins feeding the fibre on its own simulated clock
    (the testbed's realtime pump; her run goes on while the stop crosses her UART, and slots
    shorter than some 24 clock cycles underflow: her UART carries two slots per 40 cycles).
    Its fibre does not survive a reset of Alice's board, so the recovery tests use
    :class:`SimBench`."""

    def __init__(self, *, distance_km=25.0, preset="lim2014", proto=None, eve_fraction=0.0,
                 seed=1, slot_period=6, frame_slots=1024, efficiency=None, board="model",
                 alice=None, stretch_frames=None):
        from hil.fibre import TimeBase
        from hil.optics import InterceptResend, Source, preset as link_preset
        from hil.testbed import BOARDS, Testbed
        alice = alice or "model"
        for kind in (board, alice):
            if kind not in BOARDS:
                raise ValueError(f"board {kind!r}: expected one of {', '.join(BOARDS)}")
        if alice == "rtl" and board != "rtl":
            raise ValueError("Alice's twin runs with Bob's twin only: board='rtl', alice='rtl'")
        proto = proto or Protocol()
        cfg = link_preset(preset, length_km=distance_km)
        receiver = replace(cfg.receiver, p_z=1 - proto.p_x)
        if efficiency is not None:
            receiver = replace(receiver, efficiency=efficiency)
        cfg = cfg.with_(receiver=receiver,
                        source=Source(proto.intensities, proto.probabilities, 1 - proto.p_x))
        self.board, self.alice_kind = board, alice
        self.slot_period, self.frame_slots = slot_period, frame_slots
        tb = TimeBase(slot_cycles=slot_period, frame_slots=frame_slots)
        self.slot_hz = tb.slot_hz
        self.testbed = Testbed(board, alice=alice, preset=preset, distance_km=distance_km,
                               timebase=tb, seed=seed, realtime=alice == "rtl", optics=cfg,
                               link_detector=False, stretch_frames=stretch_frames,
                               attack=InterceptResend(eve_fraction) if eve_fraction > 0 else None)
        self._stop = threading.Event()
        self.error = None
        self._thread = threading.Thread(target=self._loop, name="testbed-driver", daemon=True)

    def start(self):
        self.testbed.start()
        self.alice_url, self.bob_url = self.testbed.alice_url, self.testbed.bob_url
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self.testbed.stop()

    @property
    def sim_seconds(self) -> float:
        return self.testbed.fibre.played / self.slot_hz

    @property
    def optics_model(self):
        """The running optics model (config, VOA setting): what the model rate is planned from."""
        return self.testbed.fibre.model

    def reset_board(self, which):
        raise NotImplementedError("the testbed's fibre does not survive a board reset; use SimBench")

    def _loop(self):
        try:
            if self.alice_kind == "rtl":
                while not self._stop.wait(0.1):     # the testbed's own pump plays her twin
                    if self.testbed.error is not None:
                        raise self.testbed.error
            else:
                self._drive()
        except Exception as exc:  # noqa: BLE001 - the demo reports it and stops
            self.error = exc

    def _drive(self):
        tb = self.testbed
        alice = tb.alice_board.alice
        flushed = True
        while not self._stop.is_set():
            with tb.alice_board.lock:
                running = alice.running
                n = 2 * len(alice.fifo) - alice.half if running else 0
            if n > 0:
                tb.advance(n)
                flushed = False
            elif not running and not flushed:
                tb.flush()
                flushed = True
            else:
                self._stop.wait(0.005)


# -- the demo ---------------------------------------------------------------------------------------

def model_parameters(optics, slot_hz: float, proto: Protocol, f_ec: float = 1.16):
    """Return the planning model's ``LinkParameters`` for a running optics model (``OpticsModel``).

    The numbers the run uses, not a preset's: fibre attenuation (length: ``optics.config``),
    every other loss on the way (insertion, the VOA's current setting) folded into Bob's
    efficiency with his optics and detector efficiency, the background per slot from the
    detectors' dark counts at this slot rate, misalignment, the afterpulse probability with the
    afterpulses in later slots (``afterpulse_slots="later"``: how the optics model fires them),
    the protocol's epsilons and ``f_ec``.  What the model cannot represent is refused: detector
    dead time, unequal detectors, intensities other than the protocol's.
    """
    from controller.postprocess.link_model import LinkParameters
    from hil.optics.physics import dark_probabilities
    cfg = optics.config
    r = cfg.receiver
    if r.dead_time_ps > 0:
        raise ValueError(f"the planning model has no detector dead time; this link has "
                         f"{r.dead_time_ps / 1e6:g} us: its model rate would not apply")
    eff = np.asarray(r.efficiency, dtype=float)
    if np.ptp(eff) > 1e-12:
        raise ValueError(f"the planning model takes one detector efficiency; this link has {eff}")
    if not np.allclose(cfg.source.intensities, proto.intensities):
        raise ValueError(f"the optics model sends intensities {cfg.source.intensities}, the "
                         f"protocol assumes {proto.intensities}")
    dark = dark_probabilities(r, 1e12 / slot_hz)
    fibre_db = cfg.fibre.alpha_db_per_km * cfg.fibre.length_km
    extra_db = optics.channel_loss_db() - fibre_db
    return LinkParameters(alpha_db_per_km=cfg.fibre.alpha_db_per_km,
                          eta_bob=r.optics_efficiency * float(eff[0]) * 10 ** (-extra_db / 10),
                          y0=float(1.0 - np.prod(1.0 - dark)), e_d=r.misalignment, f_ec=f_ec,
                          p_ap=r.afterpulse_probability, sift_factor=1.0,
                          eps_sec=proto.eps_sec, eps_cor=proto.eps_cor, afterpulse_slots="later")


def link_plan(proto: Protocol, optics, slot_hz: float, block_size: float):
    """Return (slots per block, model secret key rate per slot, figures) for ``block_size``
    key-basis detections on the running link ``optics``: the planning model's ``finite_rate``
    (what ``qkdnode model rate`` evaluates) fed with :func:`model_parameters` and this protocol's
    intensities, probabilities and basis choice, with the reconciliation efficiency f of the
    node's Cascade measured at the model's QBER and this block size
    (:func:`~controller.postprocess.planning.reconciliation_efficiency`).  ``figures["inputs"]``
    is the model-inputs object (``controller.cli_model.model_inputs``) that
    ``qkdnode model rate --params`` evaluates to the same rate."""
    from controller.cli_model import model_inputs
    from controller.postprocess.planning import (FiniteSettings, expected_counts, plan,
                                                 reconciliation_efficiency)
    settings = FiniteSettings(1 - proto.p_x, tuple(float(x) for x in proto.intensities),
                              tuple(float(x) for x in proto.probabilities))
    params = model_parameters(optics, slot_hz, proto)
    distance_km = float(optics.config.fibre.length_km)
    block_size = float(block_size)
    counts, pulses = expected_counts(params, distance_km, block_size, settings)
    qber = sum(counts.m_key) / sum(counts.n_key)
    f = reconciliation_efficiency(int(block_size), qber, mode=proto.cascade_mode,
                                  eps_cor=proto.eps_cor, method=proto.reconciliation)
    params = params.with_(f_ec=f)
    # the same call `qkdnode model rate --params` makes on these inputs
    rate = plan(params, distance_km, proto.method, block_size, settings=settings)
    figures = {"model_qber": round(float(qber), 5), "model_f_ec": round(f, 4),
               "model_eta_bob": params.eta_bob, "model_y0": params.y0,
               "model_p_ap": params.p_ap, "model_e_d": params.e_d,
               "inputs": model_inputs(params, distance_km, block_size, proto.method, settings,
                                      slot_hz)}
    return int(math.ceil(pulses / 2) * 2), rate["key_rate_per_pulse"], figures


@dataclass
class DemoResult:
    """The demo's summary (``--json`` prints it); ``ok`` is False if a check failed."""

    distance_km: float
    eve_fraction: float
    block_size: int
    block_slots: int
    board: str = "model"
    blocks: int = 0
    blocks_with_key: int = 0
    blocks_aborted: int = 0
    alarms: int = 0
    sifted_bits: int = 0
    secret_bits: int = 0
    qber: float | None = None
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0
    secret_key_rate_bps: float = 0.0
    model_key_rate_bps: float = 0.0
    rate_ratio: float | None = None
    model: dict = field(default_factory=dict)
    model_inputs: dict = field(default_factory=dict)
    model_command: str = ""
    auth_bits_used: int = 0
    replenished_bits: int = 0
    net_bits: int = 0
    blocks_per_s: float = 0.0
    keys_requested: int = 0
    keys_delivered: int = 0
    keys_match: bool = False
    stores_agree: bool = False
    history: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    seed: int | None = None
    delivered_keys: dict = field(default_factory=dict, repr=False)   # for tests; never printed

    @property
    def ok(self):
        return not self.failures

    def to_json(self) -> dict:
        out = asdict(self) | {"ok": self.ok}
        out.pop("delivered_keys")
        return out


def _https_json(url, ctx, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def run_demo(*, distance_km=25.0, eve_fraction=0.0, block_size=100_000, seconds=None,
             blocks=None, seed=None, workdir=None, progress=None, keys=4, key_size=256,
             serve=False, max_wall_s=None, proto=None, block_slots=None,
             bench="testbed", bench_options=None, board="model", alice=None,
             model_params=None) -> DemoResult:
    """Run both nodes on the simulated bench until ``blocks`` blocks (or ``seconds`` of link
    time) are done, then fetch ``keys`` keys through ETSI 014 on both KMEs and compare them.

    ``progress(stats_dict)`` is called about twice a second; ``serve`` keeps the KMEs up until
    Ctrl-C once the summary is made (the caller prints their URLs).  ``bench``: ``"testbed"``
    (the project's ``hil.testbed.Testbed``, default) or ``"sim"`` (:class:`SimBench`, which
    also survives board resets); ``bench_options`` go to its constructor (e.g. ``efficiency``).
    ``board="rtl"``: Bob's board is his gateware in Verilator (``alice="rtl"``: Alice's too),
    with :data:`RTL_DEFAULTS` for the bench options not given and longer link timeouts.
    ``model_params``: a path to write the model's inputs to (``qkdnode model rate --params``
    gives ``model_key_rate_bps`` back from it; ``model_command`` is that command).
    """
    from controller.channel import AuthKeyPool
    from controller.kms.etsi014 import KMEServer, TLSFiles, client_ssl_context
    from controller.kms.kme import KME, KMEConfig
    from controller.kms.pki import init_pki
    from controller.kms.store import KeyStore
    from controller.metrics import Metrics
    from controller.node.boards import AliceBoard, BobBoard
    from controller.node.runner import Node

    proto = proto or Protocol()
    seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else seed
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="qkdnode-demo-")
        workdir = tmp.name
    root = Path(workdir)
    pki = init_pki(root / "pki", ["alice-kme", "bob-kme"], ["sae-a", "sae-b"])
    psk = root / "channel.psk"
    AuthKeyPool.create_secret_file(psk, n_messages=1 << 16)
    if bench not in ("testbed", "sim"):
        raise ValueError(f"bench {bench!r}: expected 'testbed' (hil.testbed.Testbed) or 'sim'")
    bench_options = dict(bench_options or {})
    rtl = board == "rtl"
    if rtl or alice is not None:
        if bench != "testbed":
            raise ValueError("the RTL twins run on the testbed bench (bench='testbed')")
        if rtl:
            for name in ("efficiency", "slot_period", "stretch_frames"):
                bench_options.setdefault(name, RTL_DEFAULTS[name])
        bench_options.update(board=board, alice=alice)
    if max_wall_s is None:
        max_wall_s = 7200.0 if rtl else 1800.0
    # a twin answers in its simulated time, slowed down some 500-fold: longer link timeouts
    link_timeout, node_timeout = (10.0, 300.0) if rtl else (2.0, 30.0)
    bench_cls = TestbedBench if bench == "testbed" else SimBench
    bench = bench_cls(distance_km=distance_km, proto=proto, eve_fraction=eve_fraction, seed=seed,
                      **bench_options)
    slot_hz = bench.slot_hz
    nodes, servers, stores = [], [], []
    t_wall = time.monotonic()
    try:
        bench.start()
        planned, rate_per_slot, model_figures = link_plan(proto, bench.optics_model, slot_hz,
                                                          block_size)
        block_slots = block_slots or planned
        if blocks is None:
            blocks = max(1, math.ceil((seconds or 0) * slot_hz / block_slots)) if seconds else 3
        res = DemoResult(distance_km, eve_fraction, int(block_size), block_slots, board=board)
        res.model_key_rate_bps = rate_per_slot * slot_hz
        res.model_inputs = model_figures.pop("inputs")
        res.model = model_figures
        res.model_command = _model_command(res.model_inputs, model_params)
        res.seed = seed
        for role, kme_id, peer_id, local, remote in (("alice", "alice-kme", "bob-kme", "sae-a", "sae-b"),
                                                     ("bob", "bob-kme", "alice-kme", "sae-b", "sae-a")):
            d = root / role
            store = KeyStore(d / "keys.db", d / "node.key", key_size=key_size)
            stores.append(store)
            kme = KME(KMEConfig(kme_id, peer_id, {local}, {remote}, newest_first=role == "alice"),
                      store)
            cert, key = pki.kmes[kme_id]
            servers.append(KMEServer(kme, TLSFiles(cert, key, pki.ca_cert)).start())
            pool = AuthKeyPool.from_file(psk, state_path=d / "channel.state")
            board = (AliceBoard(bench.alice_url, proto, slot_period=bench.slot_period,
                                frame_slots=bench.frame_slots, chunk=30_000,
                                link_timeout=link_timeout)
                     if role == "alice" else
                     BobBoard(bench.bob_url, slot_period=bench.slot_period,
                              frame_slots=bench.frame_slots, seed=seed + 1,
                              link_timeout=link_timeout))
            node = Node(role, board, proto, block_slots, store, pool, kme=kme,
                        metrics=Metrics(role, clock=lambda: bench.sim_seconds),
                        listen=("127.0.0.1", 0) if role == "alice" else None,
                        connect_to=nodes[0].address if role == "bob" else None,
                        clock=lambda: bench.sim_seconds, name=role, slot_hz=slot_hz,
                        timeout_s=node_timeout, run_timeout_s=max(600.0, max_wall_s),
                        max_blocks=blocks if role == "alice" else None)
            nodes.append(node)
        for node in nodes:
            node.start()
        alice, bob = nodes
        while alice.stats.blocks < blocks or bob.stats.blocks < blocks:
            if time.monotonic() - t_wall > max_wall_s:
                res.failures.append(f"the nodes did not finish {blocks} blocks within "
                                    f"{max_wall_s:g} s of wall time")
                break
            err = alice.error or bob.error
            if err:
                res.failures.append(f"a node stopped: {err}")
                break
            if getattr(bench, "error", None):
                res.failures.append(f"the simulated bench stopped: {bench.error}")
                break
            if progress:
                progress(_live(alice, bench))
            time.sleep(0.5)
        res.wall_seconds = time.monotonic() - t_wall
        _summarise(res, alice, bench)
        if progress:
            progress(_live(alice, bench))
        if not res.failures:
            _fetch_keys(res, servers, pki, keys, key_size)     # the nodes' channel is still up
        for node in nodes:
            node.signal_stop()
        for node in nodes:
            node.stop()
        res.stores_agree = sorted(alice.stats.key_ids) == sorted(bob.stats.key_ids)
        if not res.stores_agree:
            res.failures.append("the two key stores hold different key IDs")
        if eve_fraction == 0 and res.secret_bits == 0:
            res.failures.append("no secret key was distilled")
        if serve:
            res.serve_info = {"alice_kme": servers[0].url, "bob_kme": servers[1].url,
                              "ca": str(pki.ca_cert),
                              "sae": {n: [str(p) for p in pki.saes[n]] for n in pki.saes}}
            return res, (servers, stores, tmp, bench)
    finally:
        for node in nodes:
            node.stop()
        if not serve:
            release((servers, stores, tmp, bench))
    return res


def _model_command(inputs: dict, path) -> str:
    """Write ``inputs`` to ``path`` (if given); return the ``qkdnode model rate`` command that
    evaluates them."""
    from controller.cli_model import rate_command
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(inputs, indent=1) + "\n")
    return rate_command(inputs, path)


def release(handles):
    """Stop what ``run_demo(serve=True)`` left running: KMEs, key stores, the bench, temp files."""
    servers, stores, tmp, bench = handles
    for server in servers:
        server.stop()
    for store in stores:
        store.close()
    bench.stop()
    if tmp is not None:
        tmp.cleanup()


def _live(alice, bench) -> dict:
    st = alice.stats
    last = st.history[-1] if st.history else {}
    sim = max(st.slots / bench.slot_hz, 1e-9)
    return {"blocks": st.blocks, "keyed": st.keyed, "alarms": st.alarms, "sifted_bits": st.sifted_bits,
            "secret_bits": st.secret_bits, "qber_x": last.get("qber_x"), "qber_z": last.get("qber_z"),
            "key_rate_bps": st.secret_bits / sim if st.slots else 0.0,
            "sim_seconds": bench.sim_seconds, "last_abort": last.get("abort"),
            # slots Alice has played since the last block ended: the block in progress
            "block_slots_played": max(round(bench.sim_seconds * bench.slot_hz) - st.slots, 0),
            "block_slots": alice.block_slots}


def _summarise(res: DemoResult, alice, bench) -> None:
    st = alice.stats
    res.blocks, res.blocks_with_key, res.alarms = st.blocks, st.keyed, st.alarms
    res.blocks_aborted = st.aborted
    res.sifted_bits, res.secret_bits = st.sifted_bits, st.secret_bits
    res.sim_seconds = st.slots / bench.slot_hz
    res.secret_key_rate_bps = st.secret_bits / res.sim_seconds if res.sim_seconds else 0.0
    if res.model_key_rate_bps > 0:
        res.rate_ratio = round(res.secret_key_rate_bps / res.model_key_rate_bps, 4)
    res.auth_bits_used, res.replenished_bits = st.auth_bits_used, st.replenished_bits
    res.net_bits = st.secret_bits - st.auth_bits_used
    res.blocks_per_s = st.blocks / res.wall_seconds if res.wall_seconds else 0.0
    q = [h["qber_z"] for h in st.history if h.get("qber_z") is not None] or \
        [h["qber_x"] for h in st.history if h.get("qber_x") is not None]
    res.qber = float(np.mean(q)) if q else None
    res.history = [{k: h.get(k) for k in ("block", "slots", "sifted_bits", "qber_x", "qber_z",
                                          "secret_bits", "abort", "leak_ec_bits", "ec_efficiency",
                                          "replenished_bits", "auth_bits_used", "net_bits", "overrun_slots",
                                          "acquire_wall_s", "distill_wall_s")} for h in st.history]


def _fetch_keys(res: DemoResult, servers, pki, number, key_size) -> None:
    """Act as the two SAEs: enc_keys on Alice's KME (sae-a), dec_keys on Bob's (sae-b)."""
    from controller.kms.etsi014 import client_ssl_context
    alice_url, bob_url = servers[0].url, servers[1].url
    ctx_a = client_ssl_context(pki.ca_cert, *pki.saes["sae-a"])
    ctx_b = client_ssl_context(pki.ca_cert, *pki.saes["sae-b"])
    status, body = _https_json(f"{alice_url}/sae-b/status", ctx_a)
    available = body.get("stored_key_count", 0) if status == 200 else 0
    number = min(number, available)
    res.keys_requested = number
    if number == 0:
        if res.eve_fraction == 0:
            res.failures.append(f"Alice's KME has no key to deliver (status {status})")
        return
    status, enc = _https_json(f"{alice_url}/sae-b/enc_keys", ctx_a, {"number": number, "size": key_size})
    if status != 200:
        res.failures.append(f"enc_keys on Alice's KME answered {status}: {enc}")
        return
    ids = [{"key_ID": k["key_ID"]} for k in enc["keys"]]
    status, dec = _https_json(f"{bob_url}/sae-a/dec_keys", ctx_b, {"key_IDs": ids})
    if status != 200:
        res.failures.append(f"dec_keys on Bob's KME answered {status}: {dec}")
        return
    a = {k["key_ID"]: base64.b64decode(k["key"]) for k in enc["keys"]}
    b = {k["key_ID"]: base64.b64decode(k["key"]) for k in dec["keys"]}
    res.keys_delivered = len(b)
    res.delivered_keys = {"alice": a, "bob": b}
    res.keys_match = a == b and len(a) == number
    if not res.keys_match:
        res.failures.append("the keys delivered to the two SAEs differ")
    # each key once per side: asking again must fail
    status, _ = _https_json(f"{bob_url}/sae-a/dec_keys", ctx_b, {"key_IDs": ids[:1]})
    if status != 400:
        res.failures.append(f"a key was delivered twice to the slave SAE (status {status})")


def parse_eve(spec: str | None) -> float:
    """Return the intercept-resend fraction of ``--eve intercept-resend:FRACTION`` (0 for None)."""
    if not spec:
        return 0.0
    kind, _, frac = spec.partition(":")
    if kind != "intercept-resend":
        raise ValueError(f"--eve {spec}: the demo knows intercept-resend:FRACTION, e.g. "
                         f"intercept-resend:0.3")
    try:
        value = float(frac or 1.0)
    except ValueError:
        raise ValueError(f"--eve {spec}: FRACTION must be a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"--eve {spec}: FRACTION must be between 0 and 1")
    return value
