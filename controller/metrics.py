"""Prometheus exporter: the figures an operator watches, in a registry of their own, served over HTTP.

The node calls :class:`Metrics` as things happen (``record_block``, ``record_detector_rates``,
``link_down``/``link_up``, ``update_store``, ``update_channel``, ...); :meth:`Metrics.serve` exposes
them at ``http://ADDR:PORT/metrics``.  Units are in the metric names (``_bps``, ``_hz``, ``_seconds``,
``_bits``, ``_ratio``).
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

NS = "qkd"
RECOVERY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, float("inf"))


class MetricsServer:
    """A running ``/metrics`` endpoint; :meth:`stop` closes it."""

    def __init__(self, httpd, thread):
        self._httpd, self._thread = httpd, thread
        self.address = httpd.server_address[:2]

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.port}/metrics"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Metrics:
    """The node's metrics; ``clock`` (seconds, monotonic) is injectable for tests."""

    def __init__(self, node: str = "node", *, clock: Callable[[], float] = time.monotonic):
        self.registry = CollectorRegistry(auto_describe=True)
        self.clock = clock
        self._down_since: dict[str, float] = {}
        r, lbl = self.registry, {"node": node}
        self.node = node

        def gauge(name, doc, labels=()):
            return Gauge(name, doc, ["node", *labels], namespace=NS, registry=r)

        def counter(name, doc, labels=()):
            return Counter(name, doc, ["node", *labels], namespace=NS, registry=r)

        self._lbl = lbl
        self.secure_key_rate = gauge("secure_key_rate_bps", "Secret key rate of the last block, bits/s.")
        self.qber = gauge("qber_ratio", "Quantum bit error rate of the last block, per basis (0..1).",
                          ["basis"])
        self.sifted_bits = counter("sifted_bits", "Sifted bits, all blocks.")
        self.secret_bits = counter("secret_bits", "Secret (distilled) bits, all blocks.")
        self.blocks = counter("blocks", "Blocks processed, by outcome (key, aborted).", ["outcome"])
        self.ec_efficiency = gauge("reconciliation_efficiency", "Reconciliation efficiency f of the "
                                   "last reconciled block: leaked bits over n h(QBER_Z) (1 is the "
                                   "Shannon limit).")
        self.ec_leaked = counter("reconciliation_leaked_bits", "Bits disclosed about the key by "
                                 "reconciliation and verification, all reconciled blocks.")
        self.distill_seconds = gauge("distill_seconds", "Wall time of the last block's distillation "
                                     "(sifting to amplification), seconds.")
        self.detector_rate = gauge("detector_count_rate_hz", "Detector count rate per channel, Hz.",
                                   ["channel"])
        self.disturbances = counter("disturbance_events", "Disturbance alarms (QBER or decoy "
                                    "statistics over threshold, channel tampering), by kind.", ["kind"])
        self.link_state = gauge("link_up", "1 if the link is up, 0 if down (board, channel, peer).",
                             ["link"])
        self.recover = Histogram("time_to_recover_seconds", "Time from a link going down to it "
                                 "coming back, seconds.", ["node", "link"], namespace=NS, registry=r,
                                 buckets=RECOVERY_BUCKETS)
        self.last_recover = gauge("last_time_to_recover_seconds", "The most recent recovery time, "
                                  "seconds.", ["link"])
        self.store_available = gauge("keystore_available_keys", "Keys available in the key store.")
        self.store_available_bits = gauge("keystore_available_bits", "Key bits available in the store.")
        self.store_capacity = gauge("keystore_capacity_keys", "Key store capacity (max_key_count).")
        self.store_fill = gauge("keystore_fill_ratio", "Available keys over capacity (0..1).")
        self.store_delivered = gauge("keystore_delivered_keys", "Keys delivered from this store.")
        self.store_reserved = gauge("keystore_reserved_keys", "Keys reserved, by side.", ["side"])
        self.auth_failures = gauge("channel_auth_failures", "Classical-channel frames rejected, by "
                                   "kind (tampered, replayed, reordered).", ["kind"])
        self.auth_remaining = gauge("channel_auth_key_remaining_bits", "Authentication key bits "
                                    "left, by direction.", ["direction"])
        self.auth_consumed = gauge("channel_auth_key_consumed_bits", "Authentication key bits used.")
        self.blocks_aborted = gauge("channel_blocks_aborted", "Blocks aborted by the channel.")
        self.pad_generation = gauge("channel_pad_generation", "Pad top-ups applied to the "
                                    "channel's authentication pool (equal on both nodes when in step).")
        self.resolved = counter("link_blocks_resolved", "Blocks left half-done at the end-of-block "
                                "exchange by a link drop or a crash, settled when the channel came "
                                "back, by outcome (committed, dropped).", ["outcome"])
        self.kme_delivered = gauge("kme_keys_delivered", "Keys delivered by the KME, by call "
                                   "(enc_keys, dec_keys).", ["call"])
        self.instrument_up = gauge("instrument_up", "1 if the bench instrument answered its last "
                                   "reading, 0 if not, by instrument.", ["instrument"])
        self.voa_attenuation = gauge("voa_attenuation_db", "Attenuation set on the VOA, dB.")
        self.voa_open = gauge("voa_output_enabled", "1 if the VOA's output shutter is open.")
        self.optical_power = gauge("optical_power_dbm", "Optical power at the power meter, dBm.")
        self.optical_power_w = gauge("optical_power_watts", "Optical power at the power meter, W.")
        self.laser_power = gauge("laser_power_dbm", "Laser output power setting, dBm.")
        self.laser_on = gauge("laser_output_enabled", "1 if the laser output is on.")
        self.detector_temp = gauge("detector_temperature_celsius", "Detector (APD) temperature, degC.")
        self.detector_tec = gauge("detector_tec_enabled", "1 if the detector's TEC regulates.")
        self.instrument_alarm = gauge("instrument_alarm", "1 while an instrument reading is out of "
                                      "its limit, by kind (detector_temperature).", ["kind"])
        self.kme_refused = gauge("kme_requests_failed", "enc_keys requests the KME could not serve, "
                                 "by reason (short_pool, peer_refused, peer_unavailable).", ["reason"])

    # -- recording ----------------------------------------------------------------------------

    def record_block(self, *, sifted_bits: int, secret_bits: int, duration_s: float,
                     qber_z: float | None = None, qber_x: float | None = None,
                     aborted: bool = False, reason: str | None = None,
                     leaked_bits: int | None = None, ec_efficiency: float | None = None,
                     distill_s: float | None = None) -> None:
        """Record one block: counts, the secret key rate over ``duration_s``, QBER per basis and,
        for a reconciled block, its leak and efficiency; ``distill_s`` the distillation's wall time.

        An aborted block yields no key and counts a disturbance event of kind ``reason``.
        """
        n = self.node
        self.sifted_bits.labels(n).inc(sifted_bits)
        if leaked_bits is not None:
            self.ec_leaked.labels(n).inc(leaked_bits)
        if ec_efficiency is not None:
            self.ec_efficiency.labels(n).set(ec_efficiency)
        if distill_s is not None:
            self.distill_seconds.labels(n).set(distill_s)
        if qber_z is not None:
            self.qber.labels(n, "Z").set(qber_z)
        if qber_x is not None:
            self.qber.labels(n, "X").set(qber_x)
        if aborted:
            self.blocks.labels(n, "aborted").inc()
            self.disturbances.labels(n, reason or "abort").inc()
            self.secure_key_rate.labels(n).set(0.0)
            return
        self.blocks.labels(n, "key").inc()
        self.secret_bits.labels(n).inc(secret_bits)
        self.secure_key_rate.labels(n).set(secret_bits / duration_s if duration_s > 0 else 0.0)

    def record_detector_rates(self, rates_hz: Mapping[int | str, float]) -> None:
        """Set the count rate (Hz) of each detector channel."""
        for channel, rate in rates_hz.items():
            self.detector_rate.labels(self.node, str(channel)).set(rate)

    def record_instrument(self, instrument: str, readings: Mapping | None) -> None:
        """Set the gauges of one instrument from its readings; ``None``: it did not answer."""
        n = self.node
        self.instrument_up.labels(n, instrument).set(0 if readings is None else 1)
        if readings is None:
            return
        if instrument == "attenuator":
            self.voa_attenuation.labels(n).set(readings["attenuation_db"])
            self.voa_open.labels(n).set(int(bool(readings["output_enabled"])))
        elif instrument == "powermeter":
            self.optical_power.labels(n).set(readings["power_dbm"])
            self.optical_power_w.labels(n).set(readings["power_w"])
        elif instrument == "laser":
            self.laser_power.labels(n).set(readings["power_dbm"])
            self.laser_on.labels(n).set(int(bool(readings["output_enabled"])))
        elif instrument == "detector":
            self.detector_temp.labels(n).set(readings["temperature_c"])
            self.detector_tec.labels(n).set(int(bool(readings["tec_enabled"])))
            self.detector_rate.labels(n, "spd").set(readings["count_rate_hz"])

    def record_instrument_alarm(self, kind: str, active: bool) -> None:
        """Set ``qkd_instrument_alarm{kind}`` (1 while the reading is out of its limit)."""
        self.instrument_alarm.labels(self.node, kind).set(int(bool(active)))

    def record_disturbance(self, kind: str) -> None:
        """Count one disturbance alarm of ``kind`` (e.g. ``qber``, ``decoy``, ``channel_tamper``)."""
        self.disturbances.labels(self.node, kind).inc()

    def link_down(self, link: str) -> None:
        """Mark ``link`` down and start its recovery clock (a second call keeps the first time)."""
        self.link_state.labels(self.node, link).set(0)
        self._down_since.setdefault(link, self.clock())

    def link_up(self, link: str) -> float | None:
        """Mark ``link`` up; return and record the time to recover if it was down."""
        self.link_state.labels(self.node, link).set(1)
        since = self._down_since.pop(link, None)
        if since is None:
            return None
        seconds = self.clock() - since
        self.record_recovery(link, seconds)
        return seconds

    def record_recovery(self, link: str, seconds: float) -> None:
        """Record a recovery time measured elsewhere."""
        self.recover.labels(self.node, link).observe(seconds)
        self.last_recover.labels(self.node, link).set(seconds)

    def update_store(self, status) -> None:
        """Copy a :class:`controller.kms.store.PoolStatus` into the key-store gauges."""
        n = self.node
        self.store_available.labels(n).set(status.available)
        self.store_available_bits.labels(n).set(status.available_bits)
        self.store_capacity.labels(n).set(status.max_key_count)
        self.store_fill.labels(n).set(status.fill)
        self.store_delivered.labels(n).set(status.delivered)
        self.store_reserved.labels(n, "master").set(status.reserved_master)
        self.store_reserved.labels(n, "slave").set(status.reserved_slave)

    def update_channel(self, figures: Mapping) -> None:
        """Copy :meth:`controller.channel.AuthChannel.figures` into the channel gauges."""
        n = self.node
        for kind in ("tampered", "replayed", "reordered"):
            self.auth_failures.labels(n, kind).set(figures.get(kind, 0))
        for direction, bits in figures.get("auth_remaining_bits", {}).items():
            self.auth_remaining.labels(n, direction).set(bits)
        self.auth_consumed.labels(n).set(figures.get("auth_consumed_bits", 0))
        self.blocks_aborted.labels(n).set(figures.get("blocks_aborted", 0))

    def update_pad_generation(self, generation: int) -> None:
        """Set the channel pool's top-up generation."""
        self.pad_generation.labels(self.node).set(generation)

    def record_resolution(self, outcome: str) -> None:
        """Count a half-done block settled at a reconnection (``committed`` or ``dropped``)."""
        self.resolved.labels(self.node, outcome).inc()

    def update_kme(self, counters) -> None:
        """Copy a :class:`controller.kms.kme.KMECounters` into the KME gauges."""
        n = self.node
        self.kme_delivered.labels(n, "enc_keys").set(counters.enc_keys_delivered)
        self.kme_delivered.labels(n, "dec_keys").set(counters.dec_keys_delivered)
        self.kme_refused.labels(n, "short_pool").set(counters.short_pool)
        self.kme_refused.labels(n, "peer_refused").set(counters.peer_refusals)
        self.kme_refused.labels(n, "peer_unavailable").set(counters.peer_unavailable)

    # -- serving ------------------------------------------------------------------------------

    def serve(self, port: int = 0, addr: str = "127.0.0.1") -> MetricsServer:
        """Serve ``/metrics`` on ``addr:port`` (0: a free port) in a background thread."""
        try:
            httpd, thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}; choose "
                          f"another port (0 picks a free one).") from None
        return MetricsServer(httpd, thread)
