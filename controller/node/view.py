"""Live progress and summaries of a node (or a node pair) for the terminal, with rich.

Figures only: blocks, sifted and secret bits, QBER, key rate, alarms.  Never key material.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table


def _fmt(value, spec=".4f"):
    return "-" if value is None else format(value, spec)


def progress_table(live: dict, title: str = "qkdnode") -> Table:
    """Return a table of the live figures (``hil.demo._live`` / ``Node`` stats dict)."""
    t = Table(title=title, show_header=True)
    for col in ("blocks", "with key", "alarms", "sifted bits", "QBER X", "QBER Z", "secret bits",
                "key rate (bit/s)", "link time (s)"):
        t.add_column(col, justify="right")
    t.add_row(str(live.get("blocks", 0)), str(live.get("keyed", 0)), str(live.get("alarms", 0)),
              f"{live.get('sifted_bits', 0):,}", _fmt(live.get("qber_x")), _fmt(live.get("qber_z")),
              f"{live.get('secret_bits', 0):,}", f"{live.get('key_rate_bps', 0.0):.1f}",
              f"{live.get('sim_seconds', 0.0):.2f}")
    return t


class DemoView:
    """The demo's live table (``update``) and its final summary (``summary``)."""

    def __init__(self, console: Console):
        self.console = console
        self._live = None

    def start(self, distance_km, eve_fraction, seed) -> None:
        eve = f", intercept-resend on {eve_fraction:.0%} of pulses" if eve_fraction else ""
        self.console.print(f"[bold]qkdnode demo[/]: two nodes over {distance_km:g} km of simulated "
                           f"fibre{eve}; seed {seed if seed is not None else '(random)'}")
        self.console.print("starting the bench, both nodes and both KMEs (mutual TLS) ...")
        self._live = Live(progress_table({}), console=self.console, refresh_per_second=4,
                          transient=False)
        self._live.start()

    def update(self, live: dict) -> None:
        if self._live is not None:
            self._live.update(progress_table(live))

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def summary(self, r) -> None:
        c = self.console
        c.print()
        t = Table(title="summary", show_header=False)
        rows = [("blocks (with key / alarms)", f"{r.blocks} ({r.blocks_with_key} / {r.alarms})"),
                ("slots per block", f"{r.block_slots:,}"),
                ("sifted bits", f"{r.sifted_bits:,}"), ("secret bits", f"{r.secret_bits:,}"),
                ("QBER (key basis; test basis if no key)", _fmt(r.qber)),
                ("link time (simulated)", f"{r.sim_seconds:.2f} s"),
                ("secret key rate", f"{r.secret_key_rate_bps:.1f} bit/s"),
                ("model key rate (qkdnode model rate)", f"{r.model_key_rate_bps:.1f} bit/s"),
                ("wall time", f"{r.wall_seconds:.1f} s ({r.blocks_per_s:.3f} blocks/s)"),
                ("keys via ETSI 014 (requested / delivered)", f"{r.keys_requested} / {r.keys_delivered}"),
                ("keys match", "yes" if r.keys_match else "no"),
                ("key stores agree", "yes" if r.stores_agree else "no")]
        for k, v in rows:
            t.add_row(k, v)
        c.print(t)
        if r.alarms:
            c.print(f"[bold yellow]disturbance alarm[/]: {r.alarms} block(s) aborted on QBER or decoy "
                    f"statistics; no key was made from them")
        if r.ok:
            c.print("[bold green]demo passed[/]")


def write_plot(result, path: Path) -> None:
    """Write a PNG of the secret key rate and the QBER per block."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    hist = result.history
    x = list(range(len(hist)))
    fig, ax = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    ax[0].bar(x, [h.get("secret_bits") or 0 for h in hist])
    ax[0].set_ylabel("secret bits per block")
    ax[1].plot(x, [h.get("qber_x") for h in hist], "o-", label="QBER X")
    ax[1].plot(x, [h.get("qber_z") for h in hist], "s-", label="QBER Z")
    ax[1].set_xlabel("block")
    ax[1].set_ylabel("QBER")
    ax[1].legend()
    fig.suptitle(f"qkdnode demo, {result.distance_km:g} km")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
