"""`qkdnode model`: key-rate planning from the decoy-state models (thin front end).

Mounted by the main CLI; every command calls :func:`controller.postprocess.planning.plan`.
A run's model inputs travel as one JSON object (:func:`model_inputs`, read back by
:func:`read_model_inputs`): ``qkdnode model rate --params FILE.json`` evaluates it, and
``qkdnode demo --model-params FILE.json`` writes the one its ``model_key_rate_bps`` came from.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import asdict, fields
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from controller.postprocess.link_model import LinkParameters, preset as link_preset
from controller.postprocess.planning import (DECOY_MODES, DEFAULT_FINITE, FINITE_MODES,
                                             FiniteSettings, plan)

app = typer.Typer(help="Key-rate models for planning a link.", no_args_is_help=True)

#: Format tag of a model-inputs file.
FORMAT = "qkdnode-model-inputs/1"
LINK_FIELDS = tuple(f.name for f in fields(LinkParameters))


class Preset(str, Enum):
    gys2005 = "gys2005"
    lim2014 = "lim2014"


class Decoy(str, Enum):
    infinite = "infinite"
    vacuum_weak = "vacuum-weak"
    one_decoy = "one-decoy"
    two_decoy = "two-decoy"
    none = "none"


def model_inputs(params: LinkParameters, distance_km: float, block_size: float | None,
                 decoy: str, settings: FiniteSettings | None = None,
                 slot_hz: float | None = None) -> dict:
    """Return the JSON object of one model evaluation: link parameters, distance (km), block
    size (key-basis detections), decoy method, finite-key settings, slot rate (Hz, optional)."""
    out = {"format": FORMAT, "link": asdict(params), "distance_km": float(distance_km),
           "block_size": None if block_size is None else float(block_size), "decoy": decoy}
    if settings is not None:
        out["settings"] = {"p_key": float(settings.p_key),
                           "intensities": [float(x) for x in settings.intensities],
                           "probabilities": [float(x) for x in settings.probabilities]}
    if slot_hz is not None:
        out["slot_hz"] = float(slot_hz)
    return out


def read_model_inputs(data: dict) -> dict:
    """Return ``{params, distance_km, block_size, decoy, settings, slot_hz}`` from a
    :func:`model_inputs` object; raise ValueError naming what is wrong."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not a model-inputs object: expected \"format\": \"{FORMAT}\"")
    link = data.get("link")
    if not isinstance(link, dict) or set(link) - set(LINK_FIELDS):
        raise ValueError(f"\"link\" must be an object with fields among {', '.join(LINK_FIELDS)}")
    decoy = data.get("decoy")
    if decoy not in DECOY_MODES:
        raise ValueError(f"\"decoy\" {decoy!r}: expected one of {', '.join(DECOY_MODES)}")
    settings = None
    if data.get("settings") is not None:
        s = data["settings"]
        try:
            settings = FiniteSettings(float(s["p_key"]), tuple(map(float, s["intensities"])),
                                      tuple(map(float, s["probabilities"])))
        except (KeyError, TypeError, ValueError):
            raise ValueError("\"settings\" needs p_key, intensities and probabilities") from None
    try:
        params = LinkParameters(**link)
    except TypeError as exc:
        raise ValueError(f"\"link\": {exc}") from None
    block = data.get("block_size")
    return {"params": params, "distance_km": float(data["distance_km"]),
            "block_size": None if block is None else float(block), "decoy": decoy,
            "settings": settings, "slot_hz": data.get("slot_hz")}


def rate_command(inputs: dict, params_file: str | Path | None = None) -> str:
    """Return the ``qkdnode model rate`` command line that evaluates ``inputs`` (the file's, or
    every input as an option, numbers written exactly)."""
    if params_file is not None:
        return shlex.join(["qkdnode", "model", "rate", "--params", str(params_file), "--json"])
    link, args = inputs["link"], ["qkdnode", "model", "rate"]
    for name in LINK_FIELDS:
        value = link[name]
        args += [f"--{name.replace('_', '-')}", value if isinstance(value, str) else repr(value)]
    args += ["--distance-km", repr(inputs["distance_km"]), "--decoy", inputs["decoy"]]
    if inputs.get("block_size") is not None:
        args += ["--block-size", repr(inputs["block_size"])]
    s = inputs.get("settings")
    if s:
        args += ["--p-key", repr(s["p_key"]), "--intensities", ",".join(map(repr, s["intensities"])),
                 "--probabilities", ",".join(map(repr, s["probabilities"]))]
    if inputs.get("slot_hz") is not None:
        args += ["--slot-hz", repr(inputs["slot_hz"])]
    return shlex.join(args + ["--json"])


def _floats(text: str | None, option: str):
    if text is None:
        return None
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected comma-separated numbers, e.g. 0.5,0.1,0.0002",
                                 param_hint=option) from None
    return values


@app.callback()
def _group() -> None:
    """Key-rate models for planning a link."""


@app.command()
def rate(
    preset: Optional[Preset] = typer.Option(None, help="Link parameter preset (default gys2005)."),
    distance_km: Optional[float] = typer.Option(None, min=0.0, help="Fibre length in km "
                                                "(default 50)."),
    block_size: Optional[float] = typer.Option(None, help="Key-basis detections per block (n_X); "
                                               "required for one-decoy/two-decoy (finite key)."),
    decoy: Optional[Decoy] = typer.Option(None, help="Decoy method / security analysis "
                                          "(default infinite)."),
    params: Optional[Path] = typer.Option(None, "--params", help="A model-inputs JSON file (what "
                                          "`qkdnode demo --model-params` writes): link, distance, "
                                          "block size, decoy method, settings, slot rate; the "
                                          "options below override its values."),
    alpha_db_per_km: Optional[float] = typer.Option(None, help="Fibre attenuation, dB/km."),
    eta_bob: Optional[float] = typer.Option(None, help="Bob's detection efficiency with every loss "
                                            "besides the fibre (0..1)."),
    y0: Optional[float] = typer.Option(None, help="Background click probability per slot, all "
                                       "detectors."),
    e_d: Optional[float] = typer.Option(None, help="Misalignment error probability."),
    f_ec: Optional[float] = typer.Option(None, help="Reconciliation efficiency f "
                                         "(leak = f n h(QBER))."),
    p_ap: Optional[float] = typer.Option(None, help="Afterpulse probability per detection."),
    afterpulse_slots: Optional[str] = typer.Option(None, help="Where afterpulses land: same "
                                                   "(Lim et al.'s formula) or later (a real "
                                                   "detector, the optics model)."),
    sift_factor: Optional[float] = typer.Option(None, help="Sifting factor of the asymptotic "
                                                "rates."),
    eps_sec: Optional[float] = typer.Option(None, help="Secrecy parameter."),
    eps_cor: Optional[float] = typer.Option(None, help="Correctness parameter."),
    p_key: Optional[float] = typer.Option(None, help="Key-basis probability (finite key)."),
    intensities: Optional[str] = typer.Option(None, help="Mean photon numbers, signal first, "
                                              "comma-separated (finite key)."),
    probabilities: Optional[str] = typer.Option(None, help="Their choice probabilities, "
                                                "comma-separated (finite key)."),
    slot_hz: Optional[float] = typer.Option(None, min=0.0, help="Slot rate in Hz: also print the "
                                            "rate in bit/s."),
    optimize: bool = typer.Option(False, "--optimize", help="Optimise intensities and probabilities."),
    max_distance: bool = typer.Option(False, "--max-distance", help="Also find where the rate hits 0."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Print the expected secret key rate in bits per pulse (and per second with a slot rate)."""
    base = {"params": link_preset((preset or Preset.gys2005).value), "distance_km": 50.0,
            "block_size": None, "decoy": "infinite", "settings": None, "slot_hz": None}
    name = (preset or Preset.gys2005).value
    if params is not None:
        if preset is not None:
            raise typer.BadParameter("give a preset or a model-inputs file, not both",
                                     param_hint="--preset")
        try:
            base = read_model_inputs(json.loads(params.read_text()))
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {params}: {exc.strerror or exc}",
                                     param_hint="--params") from None
        except ValueError as exc:
            raise typer.BadParameter(f"{params}: {exc}", param_hint="--params") from None
        name = "custom"
    link = {k: v for k, v in {"alpha_db_per_km": alpha_db_per_km, "eta_bob": eta_bob, "y0": y0,
                              "e_d": e_d, "f_ec": f_ec, "p_ap": p_ap, "sift_factor": sift_factor,
                              "afterpulse_slots": afterpulse_slots, "eps_sec": eps_sec,
                              "eps_cor": eps_cor}.items() if v is not None}
    try:
        link_params = base["params"].with_(**link)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if link:
        name = "custom"
    distance_km = base["distance_km"] if distance_km is None else distance_km
    block_size = base["block_size"] if block_size is None else block_size
    decoy = base["decoy"] if decoy is None else decoy.value
    slot_hz = base["slot_hz"] if slot_hz is None else slot_hz
    settings = base["settings"]
    mus, ps = _floats(intensities, "--intensities"), _floats(probabilities, "--probabilities")
    if p_key is not None or mus is not None or ps is not None:
        if decoy not in FINITE_MODES:
            raise typer.BadParameter(f"--p-key, --intensities and --probabilities are finite-key "
                                     f"settings; give --decoy {' or '.join(FINITE_MODES)}")
        s = settings or DEFAULT_FINITE[decoy]
        settings = FiniteSettings(s.p_key if p_key is None else p_key,
                                  s.intensities if mus is None else mus,
                                  s.probabilities if ps is None else ps)
    if settings is not None and len(settings.intensities) != len(settings.probabilities):
        raise typer.BadParameter(f"{len(settings.intensities)} intensities but "
                                 f"{len(settings.probabilities)} probabilities",
                                 param_hint="--probabilities")
    if decoy in FINITE_MODES and block_size is None:
        raise typer.BadParameter(f"--decoy {decoy} is a finite-key analysis: "
                                 "give --block-size (n_X, e.g. 1e9)", param_hint="--block-size")
    if decoy not in FINITE_MODES:
        settings = None
    result = plan(link_params if name == "custom" else name, distance_km, decoy, block_size,
                  optimize, max_distance, settings=settings)
    if slot_hz is not None:
        result["slot_hz"] = slot_hz
        result["key_rate_bps"] = result["key_rate_per_pulse"] * slot_hz
    if as_json:
        if "max_distance_km" in result and math.isinf(result["max_distance_km"]):
            result["max_distance_km"] = None
        typer.echo(json.dumps(result))
        return
    rate_bps = f", {result['key_rate_bps']:.4g} bit/s" if slot_hz is not None else ""
    typer.echo(f"key rate: {result['key_rate_per_pulse']:.4g} bit/pulse{rate_bps} "
               f"({name}, {decoy}, {distance_km:g} km)")
    typer.echo(f"settings: {result['settings']}")
    if max_distance:
        typer.echo(f"max distance: {result['max_distance_km']:.2f} km")
