"""``hilnas latency ...``: measure candidates, calibrate latency predictors, report their accuracy.

These commands are their own single writer of the store: they read the measurement cache, measure
what is missing and write the rows in short transactions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hilnas.errors import UserError
from latency_models.measurer import FAMILY

if TYPE_CHECKING:
    from latency_models.protocol import ProtocolConfig

app = typer.Typer(
    help="Measure candidates on a device, calibrate latency predictors, report them.", no_args_is_help=True
)
console = Console()

DbOption = Annotated[str | None, typer.Option("--db-url", help="result store (default: HILNAS_DB_URL)")]
DeviceOption = Annotated[str | None, typer.Option("--device", help="device name (Ray resource hw:<device>)")]
BackendOption = Annotated[str, typer.Option("--backend", help="executorch-xnnpack or torch-eager")]
ThreadsOption = Annotated[int, typer.Option("--threads", min=1, help="runtime threads, fixed per measurement")]
InProcessOption = Annotated[
    bool, typer.Option("--in-process/--via-ray", help="measure here instead of on the device's Ray actor")
]
AddressOption = Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: local)")]
CiOption = Annotated[
    float, typer.Option("--ci-half-width", min=0.001, help="target half-width of the median's 95% CI, relative")
]
LoadsOption = Annotated[
    int | None,
    typer.Option("--loads", min=1, help="times each program is loaded afresh and timed (default: the protocol's)"),
]
MinTimeOption = Annotated[
    float | None,
    typer.Option("--min-time", min=0.0, help="seconds each load is timed at least (default: the protocol's)"),
]
ExportWorkersOption = Annotated[
    int | None,
    typer.Option(
        "--export-workers",
        min=0,
        help="processes that export candidates, so that the one timing them never exports (default: one per "
        "usable core; 0: export in the timing process)",
    ),
]


def _protocol(threads: int, ci_half_width: float, loads: int | None, min_time: float | None) -> ProtocolConfig:
    """The measurement protocol the command-line options describe; what they leave out keeps its default."""
    from latency_models.protocol import ProtocolConfig

    return ProtocolConfig().with_changes(threads=threads, ci_half_width=ci_half_width, loads=loads, min_time_s=min_time)


def _read_mapping(target: str) -> dict[str, Any] | None:
    """The YAML/JSON/TOML mapping in ``target``, or None when no such file exists."""
    path = Path(target)
    if not path.is_file():
        return None
    from search.spec import read_mapping as read_spec_file

    return read_spec_file(path)


def _candidates(target: str, samples: int, seed: int) -> tuple[list[dict[str, Any]], str | None]:
    """Candidate params from a spec (random draws from its space) or an architecture file."""
    from search.family import InvalidCandidate
    from search.registry import create_family
    from search.spec import load_spec, parse_spec

    data = _read_mapping(target)
    if data is None or "family" in data:
        spec = parse_spec(data, origin=target) if data is not None else load_spec(target)
        if spec.family != FAMILY:
            raise UserError(f"The spec {target} searches family {spec.family!r}; latency measurement needs {FAMILY!r}.")
        from latency_models.calibration import candidate_pool

        return [c.params for c in candidate_pool(spec.space, samples, seed)], spec.device
    family = create_family(FAMILY)
    try:  # any buildable architecture may be measured, not only points of the default space
        family.check_candidate(data)
    except InvalidCandidate as exc:
        raise UserError(f"The architecture in {target} cannot be built: {exc}.") from exc
    return [data], None


@app.command("measure")
def measure(
    target: Annotated[
        str, typer.Argument(help="an architecture file (YAML/JSON) or a search spec", metavar="SPEC|ARCH")
    ],
    samples: Annotated[int, typer.Option("--samples", min=1, help="random candidates drawn from a spec")] = 1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOption = None,
    backend: BackendOption = "executorch-xnnpack",
    threads: ThreadsOption = 1,
    ci_half_width: CiOption = 0.03,
    loads: LoadsOption = None,
    min_time: MinTimeOption = None,
    export_workers: ExportWorkersOption = None,
    in_process: InProcessOption = False,
    address: AddressOption = None,
    db_url: DbOption = None,
) -> None:
    """Measure prefill and decode latency of ARCH, or of random candidates from SPEC's space."""
    from hilnas.settings import get_settings

    candidates, spec_device = _candidates(target, samples, seed)
    settings = get_settings()
    db_url = db_url or settings.db_url
    device = device or spec_device or settings.device
    from latency_models.measurer import DeviceMeasurer

    protocol = _protocol(threads, ci_half_width, loads, min_time)
    measurer = DeviceMeasurer(
        db_url,
        device,
        backend,
        protocol,
        in_process=in_process,
        address=address or settings.ray_address,
        family_options={"export_workers": export_workers},
    )
    table = Table("arch", "phase", "shape", "median ms", "p10", "p90", "CV", "stable", "source", title=f"hw:{device}")
    failed = 0
    for params in candidates:
        try:
            rows, from_cache = measurer(params)
        except Exception as exc:  # export failure or unstable device: report it, go on with the others
            failed += 1
            console.print(f"[red]{type(exc).__name__}: {str(exc).splitlines()[0]}[/]")
            continue
        for phase, row in rows.items():
            table.add_row(
                row["arch_hash"][:12],
                phase,
                json.dumps(row["shape"]),
                f"{row['median_ms']:.3f}",
                f"{row['p10_ms']:.3f}",
                f"{row['p90_ms']:.3f}",
                f"{row['cv']:.3f}",
                str(row["stable"]),
                "cache" if from_cache else "measured",
            )
    console.print(table)
    if failed:
        raise typer.Exit(1)


@app.command("calibrate")
def calibrate(
    device: Annotated[str, typer.Option("--device", help="device name (Ray resource hw:<device>)")],
    budget: Annotated[
        int, typer.Option("--budget", min=4, help="architectures to measure (each: prefill + decode); at least 4")
    ],
    initial: Annotated[
        int | None, typer.Option("--initial", help="space-filling design size (default: budget/2)")
    ] = None,
    pool: Annotated[int, typer.Option("--pool", min=10, help="random candidates to choose from")] = 400,
    noise: Annotated[int, typer.Option("--noise", min=0, help="architectures re-measured for the noise floor")] = 4,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    backend: BackendOption = "executorch-xnnpack",
    threads: ThreadsOption = 1,
    ci_half_width: CiOption = 0.03,
    loads: LoadsOption = None,
    min_time: MinTimeOption = None,
    export_workers: ExportWorkersOption = None,
    in_process: InProcessOption = False,
    address: AddressOption = None,
    db_url: DbOption = None,
) -> None:
    """Measure a designed sample of architectures on DEVICE, fit every predictor, store them with metrics.

    The device's peak compute and bandwidth (the roofline's ceilings) are measured where the
    candidates are: in the device's actor, or in this process with --in-process.
    """
    from rich.progress import Progress

    from hilnas.settings import get_settings
    from latency_models.device_calibration import calibrate_device
    from latency_models.drift_exponent import describe
    from latency_models.measurer import DeviceMeasurer
    from latency_models.tables import LEGEND, add_metrics_row, metrics_table

    settings = get_settings()
    protocol = _protocol(threads, ci_half_width, loads, min_time)
    measurer = DeviceMeasurer(
        db_url or settings.db_url,
        device,
        backend,
        protocol,
        in_process=in_process,
        address=address or settings.ray_address,
        stage="calibration",
        family_options={"export_workers": export_workers},
    )
    with Progress(console=console) as progress:
        task = progress.add_task("measuring", total=budget)
        outcome = calibrate_device(
            measurer,
            budget=budget,
            initial=initial,
            pool_size=pool,
            noise=noise,
            seed=seed,
            on_step=lambda done, _total: progress.update(task, completed=done),
        )
    for failure in outcome.failures:
        console.print(f"[yellow]skipped {failure}[/]")
    table = metrics_table(f"Latency predictors for hw:{device} ({backend})")
    for phase, reports in outcome.reports.items():
        for report in reports:
            metrics = {**report.metrics, "noise_floor": outcome.noise_floors.get(phase)}
            add_metrics_row(table, phase, report.name, report.selected, report.n_train, metrics, report.cv_mape)
    console.print(table)
    console.print(LEGEND)
    for phase, reports in outcome.reports.items():
        console.print(describe(phase, reports[0].drift.as_metrics()))
    peaks = outcome.peaks
    console.print(f"Device peaks: {peaks['peak_gflops']:.1f} GFLOP/s, {peaks['bandwidth_gbs']:.1f} GB/s.")


@app.command("report")
def report(device: DeviceOption = None, db_url: DbOption = None) -> None:
    """The newest stored predictors per device, backend and phase, with their accuracy."""
    from latency_models.drift_exponent import describe
    from latency_models.predictors import describe_cache_knee
    from latency_models.storage import list_predictors
    from latency_models.tables import LEGEND, add_metrics_row, metrics_table

    records = list_predictors(db_url, device)
    if not records:
        where = f" for device {device!r}" if device else ""
        raise UserError(f"No latency predictors are stored{where}; run `hilnas latency calibrate` first.")
    newest: dict[tuple, dict] = {}
    for record in records:
        newest[(record["device"], record["backend"], record["phase"], record["name"])] = record
    for dev, backend in sorted({(k[0], k[1]) for k in newest}):
        table = metrics_table(f"hw:{dev} ({backend})")
        for (d, b, phase, name), record in sorted(newest.items()):
            if (d, b) == (dev, backend):
                add_metrics_row(
                    table,
                    phase,
                    name,
                    record["selected"],
                    record["n_measurements"],
                    record["metrics"],
                    record["cv_mape"],
                )
        console.print(table)
        for (d, b, phase, _), record in sorted(newest.items()):
            if (d, b) == (dev, backend) and record["selected"]:
                console.print(describe(phase, record["metrics"].get("drift_exponent")))
                if "cache_knee" in record["metrics"]:  # absent from predictors stored before the knee existed
                    console.print(describe_cache_knee(phase, record["metrics"]["cache_knee"]))
    console.print(LEGEND)
