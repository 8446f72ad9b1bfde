"""``qkdnode``: the command-line front end, a thin layer over the library.

Every command calls a function a user could call from Python; operator mistakes (a bad URL, an
unknown bench, no board answering) end with a one-paragraph error and a non-zero exit, never a
traceback.
"""

import importlib
import importlib.util
import json
import pkgutil
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from controller import __version__
from controller.link.errors import LinkError
from controller.link.transport import DEFAULT_BAUD

REPO = Path(__file__).resolve().parents[1]

app = typer.Typer(help="qkdnode: an open QKD node, gateware and host controller.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False, add_completion=False)
board_app = typer.Typer(help="Talk to a board (or serve the behavioural model).", no_args_is_help=True)
docs_app = typer.Typer(help="Generated documentation.", no_args_is_help=True)
app.add_typer(board_app, name="board")
app.add_typer(docs_app, name="docs")

if importlib.util.find_spec("controller.cli_model") is not None:
    from controller.cli_model import app as _model_app
    app.add_typer(_model_app, name="model")

from controller.kms.cli import keys_app as _keys_app, pki_app as _pki_app  # noqa: E402
app.add_typer(_pki_app, name="pki")
app.add_typer(_keys_app, name="keys")

err = Console(stderr=True)
out = Console()


def fail(message, code=1):
    """Print ``message`` as an error for the operator and exit with ``code``."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _version_callback(value: bool):
    if value:
        from gateware.spec import GATEWARE_VERSION, PROTOCOL_VERSION
        gw = ".".join(map(str, GATEWARE_VERSION))
        print(f"qkdnode {__version__} (wire protocol {PROTOCOL_VERSION}, gateware spec {gw})")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                       help="Print the package and protocol versions and exit.")):
    """qkdnode: an open QKD node, gateware and host controller."""


# -- board --------------------------------------------------------------------------------------

def _serial_baud(board, baud):
    """Return the UART rate for a serial port (``boards.serial_baud``); a clear exit for an
    unknown board."""
    from boards import BOARDS, serial_baud
    try:
        return serial_baud(board, baud)
    except ValueError:
        fail(f"--board {board}: expected one of {', '.join(BOARDS)}.")


@board_app.command("info")
def board_info(
    url: str = typer.Option(..., "--url", help="Link URL: /dev/ttyUSB1, socket://HOST:PORT, loop://."),
    board: str = typer.Option(None, "--board", help="The board on the serial port (icebreaker, "
                              "ulx3s, arty_a7): its UART rate is the default --baud."),
    baud: int = typer.Option(None, help=f"UART rate in baud (serial ports only); default: the "
                             f"--board's, else {DEFAULT_BAUD}."),
    timeout: float = typer.Option(0.25, help="Reply timeout per attempt, in seconds."),
    retries: int = typer.Option(3, help="Retries per request."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Print the board's identity and gateware version, read over the link."""
    from controller.device import Device
    baud = _serial_baud(board, baud)
    try:
        with Device(url, timeout=timeout, retries=retries, baudrate=baud) as dev:
            info = dev.info()
    except LinkError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(info))
        return
    table = Table(show_header=False, box=None)
    for key, value in info.items():
        table.add_row(key, str(value))
    out.print(f"[bold]qkdnode board[/] on {url}")
    out.print(table)


@board_app.command("model")
def board_model(
    port: int = typer.Option(..., "--port", min=0, max=65535, help="TCP port on 127.0.0.1 (0: pick a free one)."),
    loopback_depth: int = typer.Option(512, min=1, max=65535, help="LOOPBACK FIFO depth, in bytes."),
    role: str = typer.Option("link", "--role", help="Role of the model: link or alice."),
):
    """Serve the behavioural board on 127.0.0.1:PORT until Ctrl-C."""
    from gateware.spec.registers import Role
    from hil.model import ModelBoard, serve
    if role not in ("link", "alice"):
        fail(f"the model serves roles link and alice here, not {role!r}.")
    try:
        serve(port, board=ModelBoard(loopback_depth=loopback_depth, role=Role[role.upper()]),
              announce=lambda line: print(line, flush=True))
    except OSError as exc:
        fail(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}. Choose another --port, "
             f"or --port 0 for a free one.")


@board_app.command("rtl")
def board_rtl(
    port: int = typer.Option(..., "--port", min=0, max=65535, help="TCP port on 127.0.0.1 (0: pick a free one)."),
    role: str = typer.Option("link", help="Gateware image: link, alice or bob."),
):
    """Serve our gateware in Verilator (the RTL twin) on 127.0.0.1:PORT until Ctrl-C."""
    from gateware.spec.registers import Role
    from hil.twin import Twin
    if role.upper() not in Role.__members__:
        fail(f"unknown role {role!r}; expected one of: {', '.join(r.name.lower() for r in Role)}")
    try:
        with Twin(Role[role.upper()], port) as twin:
            print(f"RTL twin ({role}) serving on {twin.url}", flush=True)
            while True:
                time.sleep(3600)
    except RuntimeError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


# -- demo ---------------------------------------------------------------------------------------

@app.command("demo")
def demo_cmd(
    seconds: Optional[float] = typer.Option(None, "--seconds", min=0.0, help="Link time to run, in "
                                            "simulated seconds (default: --blocks blocks)."),
    blocks: Optional[int] = typer.Option(None, "--blocks", min=1, help="Blocks to distil (when "
                                         "--seconds is not given): 2, or 1 with --board rtl."),
    distance_km: Optional[float] = typer.Option(None, "--distance-km", min=0.0, help="Fibre length, "
                                                "km: 25, or 0 with --board rtl."),
    block_size: Optional[int] = typer.Option(None, "--block-size", min=1000, help="Key-basis "
                                             "detections per block (n_Z): 100000, or 50000 with "
                                             "--board rtl; the block's slot count follows from the "
                                             "link model."),
    eve: Optional[str] = typer.Option(None, "--eve", help="Eavesdropper: intercept-resend:FRACTION "
                                      "(0..1), e.g. intercept-resend:0.3."),
    board: str = typer.Option("model", "--board", help="Board target: model (behavioural boards), "
                              "or rtl: Bob's gateware in Verilator (his RTL twin; slow: about 165 "
                              "clock cycles per detection at 65 000-100 000 cycles per CPU second, "
                              "so the rtl demo runs 0 km, 90 % detectors, 40-cycle slots and one "
                              "block of n_Z = 50000: measured 20 CPU minutes, 53 min wall at load "
                              "15 on 2 cores; see docs/operations.md)."),
    alice: str = typer.Option("model", "--alice", help="Alice's board with --board rtl: model, or "
                              "rtl (her twin too: one block took 34 min wall at load 8)."),
    seed: Optional[int] = typer.Option(None, help="Seed of the simulated optics (default: random, printed)."),
    keys: int = typer.Option(4, "--keys", min=1, max=128, help="Keys the SAEs fetch at the end."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of key rate and QBER per block."),
    model_params: Optional[Path] = typer.Option(None, "--model-params", help="Write the planning "
                                                "model's inputs for this run to this JSON file: "
                                                "`qkdnode model rate --params FILE` prints "
                                                "model_key_rate_bps again."),
    serve: bool = typer.Option(False, "--serve", help="Keep both KMEs up afterwards (until Ctrl-C) and "
                               "print their URLs and the SAE certificate paths."),
    reconciliation: str = typer.Option("cascade", "--reconciliation", help="Error correction of "
                                       "both nodes ([protocol] reconciliation): cascade (low-round "
                                       "mode) or ldpc (one way, a few round trips per block)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
):
    """Run two nodes over a simulated 25 km link, fetch keys through ETSI 014 and compare them."""
    from hil.demo import RTL_DEFAULTS, parse_eve, run_demo
    from controller.node.view import DemoView, write_plot
    if board not in ("model", "rtl"):
        fail(f"--board {board}: expected model (behavioural boards) or rtl (Bob's RTL twin).")
    if alice not in ("model", "rtl"):
        fail(f"--alice {alice}: expected model or rtl.")
    if alice == "rtl" and board != "rtl":
        fail("--alice rtl runs Alice's twin with Bob's: add --board rtl.")
    from controller.node.protocol import RECONCILIATIONS, Protocol
    if reconciliation not in RECONCILIATIONS:
        fail(f"--reconciliation {reconciliation}: expected one of {', '.join(RECONCILIATIONS)}.")
    try:
        fraction = parse_eve(eve)
    except ValueError as exc:
        fail(str(exc))
    rtl = board == "rtl"
    defaults = RTL_DEFAULTS if rtl else {"distance_km": 25.0, "block_size": 100_000, "blocks": 2}
    distance_km = defaults["distance_km"] if distance_km is None else distance_km
    block_size = defaults["block_size"] if block_size is None else block_size
    blocks = defaults["blocks"] if blocks is None else blocks
    view = None if as_json else DemoView(out)
    progress = view.update if view else None
    if rtl:
        who = "Alice's and Bob's gateware" if alice == "rtl" else "Bob's gateware"
        err.print(f"--board rtl: {who} in Verilator; {distance_km:g} km, "
                  f"{RTL_DEFAULTS['efficiency']:.0%} detectors, "
                  f"{RTL_DEFAULTS['slot_period']}-cycle slots, blocks of n_Z = {block_size}: "
                  f"one block of n_Z = 50000 takes some 20 CPU minutes (twin and host; more "
                  f"wall time on a loaded machine; the twin is built once); progress every 30 s.",
                  highlight=False)
        progress = _RtlProgress(progress)
    try:
        if view:
            view.start(distance_km, fraction, seed)
        result = run_demo(distance_km=distance_km, eve_fraction=fraction, block_size=block_size,
                          seconds=seconds, blocks=blocks, seed=seed, keys=keys, serve=serve,
                          progress=progress, board=board, alice=alice if rtl else None,
                          model_params=model_params, proto=Protocol(reconciliation=reconciliation))
    except KeyboardInterrupt:
        fail("interrupted")
    except (ValueError, RuntimeError, OSError) as exc:
        fail(f"demo could not run: {exc}")
    finally:
        if view:
            view.stop()
    handles = None
    if serve:
        result, handles = result
    if plot is not None:
        write_plot(result, plot)
    if as_json:
        print(json.dumps(result.to_json()))
    else:
        view.summary(result)
        out.print(f"the model's figure again: {result.model_command}", highlight=False)
    if serve and handles is not None:
        info = result.serve_info
        out.print(f"Alice's KME: {info['alice_kme']}  (master SAE sae-a)\nBob's KME:   {info['bob_kme']}"
                  f"  (slave SAE sae-b)\nCA: {info['ca']}\nSAE certificates: {info['sae']}\n"
                  f"Ctrl-C to stop.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            from hil.demo import release
            release(handles)
    if not result.ok:
        fail("demo failed: " + "; ".join(result.failures))


class _RtlProgress:
    """The rtl demo's sign of life: a line on stderr every ``every_s`` seconds (slots of the block
    in progress, blocks done), then the live view's update if there is one."""

    def __init__(self, then=None, every_s=30.0):
        self.then, self.every_s = then, every_s
        self.t0 = self.last = time.monotonic()

    def __call__(self, live: dict) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            err.print(f"[{now - self.t0:6.0f} s] blocks done {live.get('blocks', 0)}, "
                      f"slots of the block in progress {live.get('block_slots_played', 0):,} of "
                      f"{live.get('block_slots', 0):,}, "
                      f"secret bits {live.get('secret_bits', 0):,}", highlight=False)
        if self.then is not None:
            self.then(live)


# -- run ----------------------------------------------------------------------------------------

@app.command("run")
def run_cmd(
    role: str = typer.Option(..., "--role", help="alice or bob: must match \\[node] role in the config."),
    config: Path = typer.Option(..., "--config", help="The node's node.toml (see docs/operations.md)."),
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING or ERROR."),
):
    """Run one node of a link until Ctrl-C: board, channel to the peer, key store, KME, metrics."""
    import logging
    from controller.config import ConfigError, load_config
    from controller.node.service import NodeService
    from controller.node.view import progress_table
    from rich.live import Live
    from rich.markup import escape
    if role not in ("alice", "bob"):
        fail(f"--role {role}: expected alice or bob.")
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        fail(escape(str(exc)))
    if cfg.role != role:
        fail(f"--role {role} but {config} says role = {cfg.role!r}: run the config written for this "
             f"end of the link, or fix \\[node] role.")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    service = NodeService(cfg)
    try:
        service.start()
    except Exception as exc:  # noqa: BLE001 - start-up errors already speak to the operator
        service.stop()
        fail(escape(f"cannot start the node: {exc}"))
    if service.address:
        out.print(f"{cfg.name}: waiting for the peer on {service.address[0]}:{service.address[1]}")
    try:
        with Live(progress_table({}, cfg.name), console=out, refresh_per_second=1) as live:
            while service.node.error is None:
                st = service.node.stats
                last = st.history[-1] if st.history else {}
                live.update(progress_table({"blocks": st.blocks, "keyed": st.keyed, "alarms": st.alarms,
                                            "sifted_bits": st.sifted_bits, "secret_bits": st.secret_bits,
                                            "qber_x": last.get("qber_x"), "qber_z": last.get("qber_z")},
                                           cfg.name))
                time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()
    if service.node.error is not None:
        fail(escape(f"the node stopped: {service.node.error}"))


# -- bench --------------------------------------------------------------------------------------

def available_benches():
    """Return the names of the benchmarks in ``bench/``."""
    import bench
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))


@app.command("bench", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Benchmark: a module bench/NAME.py."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object of named figures."),
):
    """Run benchmark NAME (its own options follow) and print its figures."""
    names = available_benches()
    if name not in names:
        fail(f"no benchmark {name!r}; benchmarks are: {', '.join(names) or '(none)'}.")
    module = importlib.import_module(f"bench.{name}")
    try:
        result = module.run(list(ctx.args))
    except SystemExit as exc:          # argparse (--help, or a bad option already explained),
        if isinstance(exc.code, int) or exc.code is None:     # or a bench's own check (a message)
            raise typer.Exit(exc.code or 0)
        fail(str(exc.code), 2)
    except LinkError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(result))
        return
    table = Table("figure", "value", title=f"bench {name}")
    for key, value in result.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    out.print(table)


# -- bitstreams and programming (issue 4) -------------------------------------------------------

ROLES = ("link", "alice", "bob")


def _check_board_role(board, role):
    from boards import BOARDS
    if board not in BOARDS:
        fail(f"no board {board!r}; boards are: {', '.join(BOARDS)}.")
    if role not in ROLES:
        fail(f"no role {role!r}; roles are: {', '.join(ROLES)}.")


@app.command("bitstream")
def bitstream_cmd(
    board: str = typer.Option(..., "--board", help="Board: icebreaker, ulx3s, arty_a7."),
    role: str = typer.Option(..., "--role", help="Role: link, alice or bob."),
    build_dir: Optional[Path] = typer.Option(None, "--build-dir", help="Build folder (default build/BOARD-ROLE)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
):
    """Build ROLE for BOARD through YoWASP and write report.json (resources, Fmax per clock)."""
    from gateware.build import BuildError, build
    _check_board_role(board, role)
    try:
        report = build(board, role, build_dir=build_dir, log=lambda line: err.print(line, highlight=False))
    except BuildError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(report))
        if report["timing_met"] is False:
            raise typer.Exit(1)
        return
    out.print(f"[bold]{board}/{role}[/] ({report['device']}): {report['kind']}")
    for name, clk in report.get("clocks", {}).items():
        out.print(f"  {name}: {clk['fmax_mhz']} MHz (target {clk['target_mhz']} MHz) "
                  f"{'met' if clk['met'] else 'FAILED'}")
    for cell, use in report.get("resources", {}).items():
        out.print(f"  {cell}: {use['used']}/{use['available']}")
    if report["timing_met"] is False:
        fail("timing not met at the target clock; see the report above")


@app.command("flash")
def flash_cmd(
    board: str = typer.Option(..., "--board", help="Board: icebreaker, ulx3s."),
    role: str = typer.Option(..., "--role", help="Role: link, alice or bob."),
    build_dir: Optional[Path] = typer.Option(None, "--build-dir", help="Build folder (default build/BOARD-ROLE)."),
    write_flash: bool = typer.Option(False, "--write-flash", help="Write the configuration flash, not SRAM."),
    cable: Optional[str] = typer.Option(None, "--cable", help="openFPGALoader cable, if not the board's own."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the programming command, run nothing."),
):
    """Program ROLE onto BOARD with openFPGALoader (building the bitstream if it is missing)."""
    from controller.flash import FlashError, flash
    from gateware.build import BuildError
    _check_board_role(board, role)
    try:
        cmd = flash(board, role, build_dir=build_dir, write_flash=write_flash, cable=cable,
                    dry_run=dry_run, log=lambda line: err.print(line, highlight=False))
    except (FlashError, BuildError) as exc:
        fail(str(exc))
    if dry_run:
        import shlex
        print(shlex.join(cmd))
    else:
        out.print(f"programmed {board} with {role}")


# -- testbed (issue 5) -------------------------------------------------------------------------

testbed_app = typer.Typer(help="The simulated bench: two boards, fibre and SCPI instruments.",
                          no_args_is_help=True)
app.add_typer(testbed_app, name="testbed")


@testbed_app.command("up")
def testbed_up(
    boards: str = typer.Option("model", "--boards", help="Boards: model, or rtl (Bob's gateware "
                               "in Verilator; Alice stays the behavioural model)."),
    distance_km: float = typer.Option(25.0, "--distance-km", min=0.0, help="Fibre length in km."),
    preset: str = typer.Option("gys2005", "--preset", help="Optics preset: gys2005 or lim2014."),
    seed: int = typer.Option(1, help="Seed of the optics model."),
    as_json: bool = typer.Option(False, "--json", help="Print the URLs and resources as one JSON line."),
):
    """Serve a simulated bench on 127.0.0.1 until Ctrl-C: print board URLs and VISA resources."""
    from hil.optics import PRESETS
    from hil.testbed import BOARDS, serve
    if boards not in BOARDS:
        fail(f"unknown --boards {boards!r}; expected one of: {', '.join(BOARDS)}")
    if preset not in PRESETS:
        fail(f"unknown --preset {preset!r}; expected one of: {', '.join(PRESETS)}")

    def announce(info):
        if as_json:
            print(json.dumps(info), flush=True)
            return
        out.print(f"[bold]qkdnode testbed[/] ({info['boards']} boards, {preset}, "
                  f"{distance_km:g} km, {info['channel_loss_db']:.2f} dB): Ctrl-C to stop")
        table = Table(show_header=False, box=None)
        table.add_row("alice", info["alice_url"])
        table.add_row("bob", info["bob_url"])
        for name, resource in info["visa"].items():
            table.add_row(name, f"{resource}  (pyvisa backend @py)")
        tbase = info["timebase"]
        table.add_row("timing", f"slot {tbase['slot_cycles']} cycles, frame {tbase['frame_slots']} "
                      f"slots, Bob bin {tbase['bin_ps']:.0f} ps, photons at phase "
                      f"{tbase['photon_phase_bins']} bins")
        out.print(table)

    try:
        serve(boards, distance_km=distance_km, preset=preset, seed=seed, announce=announce)
    except (RuntimeError, OSError) as exc:
        fail(str(exc))


# -- docs ---------------------------------------------------------------------------------------

@docs_app.command("protocol")
def docs_protocol(
    check: bool = typer.Option(False, "--check", help="Exit 1 if the file differs from the spec."),
    write: Optional[Path] = typer.Option(None, "--write", help="Write the Markdown to this file."),
):
    """Render docs/protocol.md from gateware.spec (print, --write it, or --check it)."""
    try:
        from gateware.spec.doc import render_protocol
    except ImportError as exc:
        fail(f"the protocol document generator is not available ({exc}); expected "
             f"gateware.spec.doc.render_protocol().")
    text = render_protocol()
    if check:
        path = write or REPO / "docs" / "protocol.md"
        current = path.read_text() if path.is_file() else None
        if current != text:
            fail(f"{path} is {'missing' if current is None else 'stale'}: regenerate it with "
                 f"`qkdnode docs protocol --write {path}`.")
        out.print(f"{path} is up to date.")
        return
    if write is not None:
        try:
            write.parent.mkdir(parents=True, exist_ok=True)
            write.write_text(text)
        except OSError as exc:
            fail(f"cannot write {write}: {exc.strerror or exc}.")
        err.print(f"wrote {write}")
        return
    sys.stdout.write(text)


def main():
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
