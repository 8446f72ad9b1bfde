"""`qkdnode model`: key-rate planning from the decoy-state models (thin front end).

Mounted by the main CLI; every command calls :func:`controller.postprocess.planning.plan`.
"""

from __future__ import annotations

import json
import math
from enum import Enum

import typer

from controller.postprocess.planning import plan

app = typer.Typer(help="Key-rate models for planning a link.", no_args_is_help=True)


class Preset(str, Enum):
    gys2005 = "gys2005"
    lim2014 = "lim2014"


class Decoy(str, Enum):
    infinite = "infinite"
    vacuum_weak = "vacuum-weak"
    one_decoy = "one-decoy"
    two_decoy = "two-decoy"
    none = "none"


@app.callback()
def _group() -> None:
    """Key-rate models for planning a link."""


@app.command()
def rate(
    preset: Preset = typer.Option(Preset.gys2005, help="Link parameter preset."),
    distance_km: float = typer.Option(50.0, min=0.0, help="Fibre length in km."),
    block_size: float = typer.Option(None, help="Key-basis detections per block (n_X); "
                                     "required for one-decoy/two-decoy (finite key)."),
    decoy: Decoy = typer.Option(Decoy.infinite, help="Decoy method / security analysis."),
    optimize: bool = typer.Option(False, "--optimize", help="Optimise intensities and probabilities."),
    max_distance: bool = typer.Option(False, "--max-distance", help="Also find where the rate hits 0."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Print the expected secret key rate in bits per pulse."""
    if decoy.value in ("one-decoy", "two-decoy") and block_size is None:
        raise typer.BadParameter(f"--decoy {decoy.value} is a finite-key analysis: "
                                 "give --block-size (n_X, e.g. 1e9)", param_hint="--block-size")
    result = plan(preset.value, distance_km, decoy.value, block_size, optimize, max_distance)
    if as_json:
        if "max_distance_km" in result and math.isinf(result["max_distance_km"]):
            result["max_distance_km"] = None
        typer.echo(json.dumps(result))
        return
    typer.echo(f"key rate: {result['key_rate_per_pulse']:.4g} bit/pulse "
               f"({preset.value}, {decoy.value}, {distance_km:g} km)")
    typer.echo(f"settings: {result['settings']}")
    if max_distance:
        typer.echo(f"max distance: {result['max_distance_km']:.2f} km")
