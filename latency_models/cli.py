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

if TYPE_CHECKING:
    from latency_models.protocol import ProtocolConfig

app = typer.Typer(
    help="Measure candidates on a device, calibrate latency predictors, report them.", no_args_is_help=True
)
console = Console()

FAMILY = "mobilellm-flash"
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


def _read_mapping(target: str) -> dict[str, Any] | None:
    """The YAML/JSON/TOML mapping in ``target``, or None when no such file exists."""
    path = Path(target)
    if not path.is_file():
        return None
    from search.spec import read_mapping as read_spec_file

    return read_spec_file(path)


class _Measurer:
    """Measures candidates through the device's Ray actor (or in this process), cache first."""

    def __init__(
        self, db_url: str, device: str, backend: str, protocol: ProtocolConfig, in_process: bool, address, stage: str
    ):  # noqa: ANN001
        from latency_models.backends import get_backend
        from search.registry import create_family

        self.db_url, self.device, self.in_process, self.stage = db_url, device, in_process, stage
        self.options = {"backend": backend, "protocol": protocol.model_dump(), "use_cache": False}
        self.family = create_family(FAMILY, self.options)
        self.backend = get_backend(backend)  # fails early, with the package to install, if it is missing
        self.actor = None
        if not in_process:
            from search import executor

            executor.connect_ray(address, [device])
            executor.require_device(device)
            self.actor = executor.device_actor(device)
        self.counter = 0

    def __call__(self, params: dict[str, Any], use_cache: bool = True) -> tuple[dict[str, dict], bool]:
        """Rows per phase and whether they all came from the cache; fresh rows are saved."""
        from latency_models import cache
        from latency_models.measure import PHASES, phase_shape

        arch, workload = self.family.candidate(params)
        cached = {
            phase: cache.lookup(
                self.db_url, arch.arch_hash(), self.device, self.backend.name, phase, phase_shape(workload, phase)
            )
            for phase in PHASES
        }
        if use_cache and all(row is not None for row in cached.values()):
            return cached, True
        evaluation = self._measure(params)
        rows = {row["phase"]: {**row, "stage": self.stage} for row in evaluation.measurements}
        if use_cache:
            cache.save(self.db_url, list(rows.values()))
        return rows, False

    def _measure(self, params: dict[str, Any]):  # noqa: ANN202 - an Evaluation
        from hilnas.settings import get_settings
        from search.family import TrialContext

        self.counter += 1
        context = TrialContext(0, self.counter, 1, 0, Path(get_settings().artifact_dir) / "latency")
        if self.actor is None:
            return self.family.measure(params, self.device, context)
        import ray

        return ray.get(self.actor.measure.remote(FAMILY, json.dumps(self.options), params, context))


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
    from latency_models.protocol import ProtocolConfig

    protocol = ProtocolConfig(threads=threads, ci_half_width=ci_half_width)
    measurer = _Measurer(db_url, device, backend, protocol, in_process, address or settings.ray_address, "measure")
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
    budget: Annotated[int, typer.Option("--budget", min=3, help="architectures to measure (each: prefill + decode)")],
    initial: Annotated[
        int | None, typer.Option("--initial", help="space-filling design size (default: budget/2)")
    ] = None,
    pool: Annotated[int, typer.Option("--pool", min=10, help="random candidates to choose from")] = 400,
    noise: Annotated[int, typer.Option("--noise", min=0, help="architectures re-measured for the noise floor")] = 4,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    backend: BackendOption = "executorch-xnnpack",
    threads: ThreadsOption = 1,
    ci_half_width: CiOption = 0.03,
    in_process: InProcessOption = False,
    address: AddressOption = None,
    db_url: DbOption = None,
) -> None:
    """Measure a designed sample of architectures on DEVICE, fit every predictor, store them with metrics."""
    import numpy as np

    from hilnas.settings import get_settings
    from latency_models import cache, storage
    from latency_models.calibration import calibrate as run_calibration
    from latency_models.calibration import candidate_pool, evaluate_predictors
    from latency_models.device_profile import measure_peaks
    from latency_models.measure import PHASES
    from latency_models.metrics import noise_floor
    from latency_models.protocol import ProtocolConfig, machine_fingerprint
    from search.families.mobilellm_flash.space import default_space

    settings = get_settings()
    db_url = db_url or settings.db_url
    protocol = ProtocolConfig(threads=threads, ci_half_width=ci_half_width)
    measurer = _Measurer(db_url, device, backend, protocol, in_process, address or settings.ray_address, "calibration")
    # Peaks are measured in this process: run calibrate on the device's node for a faithful roofline.
    peaks = measure_peaks(protocol)
    storage.save_profile(db_url, device, threads, peaks, machine_fingerprint(measurer.backend.versions(), protocol))
    candidates = candidate_pool(default_space(), pool, seed)
    from rich.progress import Progress

    with Progress(console=console) as progress:
        task = progress.add_task("measuring", total=budget)
        result = run_calibration(
            candidates,
            lambda c: measurer(c.params)[0],
            budget,
            initial or max(2, budget // 2),
            seed,
            on_step=lambda done, _t: progress.update(task, completed=done),
        )
    for failure in result.failures:
        console.print(f"[yellow]skipped {failure}[/]")
    floors: dict[str, dict[str, float] | None] = {}
    repeat = [candidates[i] for i in result.measured[:noise]]
    for phase in PHASES:
        floors[phase] = None
    if len(repeat) > 1:
        again = [measurer(c.params, use_cache=False)[0] for c in repeat]
        first = [measurer(c.params)[0] for c in repeat]
        for phase in PHASES:
            floors[phase] = noise_floor(
                np.array([f[phase]["median_ms"] for f in first]), np.array([a[phase]["median_ms"] for a in again])
            )
    table = _metrics_table(f"Latency predictors for hw:{device} ({backend})")
    for phase in PHASES:
        rows = [r for r in cache.load(db_url, device, backend) if r["phase"] == phase]
        if len(rows) < 4:
            raise UserError(f"Only {len(rows)} stable {phase} measurements on {device}; raise --budget.")
        for report in evaluate_predictors(rows, peaks):
            metrics = {**report.metrics, "noise_floor": floors[phase]}
            storage.save_predictor(
                db_url,
                device=device,
                backend=backend,
                phase=phase,
                predictor=report.predictor,
                n_measurements=len(rows),
                metrics=metrics,
                cv_mape=report.cv_mape,
                selected=report.selected,
            )
            _add_metrics_row(table, phase, report.name, report.selected, len(rows), metrics)
    console.print(table)


def _metrics_table(title: str) -> Table:
    table = Table(title=title)
    for column in (
        "phase",
        "predictor",
        "n",
        "MAPE",
        "RMSPE",
        "±5%",
        "±10%",
        "tau",
        "OOR MAPE",
        "OOR tau",
        "noise MAPE",
    ):
        table.add_column(column, justify="right")
    return table


def _add_metrics_row(table: Table, phase: str, name: str, selected: bool, n: int, metrics: dict) -> None:
    rnd, out, floor = metrics["random"], metrics["out_of_range"], metrics.get("noise_floor")
    table.add_row(
        phase,
        name + (" *" if selected else ""),
        str(n),
        f"{rnd['mape']:.1f}%",
        f"{rnd['rmspe']:.1f}%",
        f"{rnd['within_5']:.0%}",
        f"{rnd['within_10']:.0%}",
        f"{rnd['kendall_tau']:.3f}",
        f"{out['mape']:.1f}%",
        f"{out['kendall_tau']:.3f}",
        "n/a" if not floor else f"{floor['mape']:.1f}%",
    )


@app.command("report")
def report(device: DeviceOption = None, db_url: DbOption = None) -> None:
    """The newest stored predictors per device, backend and phase, with their accuracy."""
    from latency_models.storage import list_predictors

    records = list_predictors(db_url, device)
    if not records:
        where = f" for device {device!r}" if device else ""
        raise UserError(f"No latency predictors are stored{where}; run `hilnas latency calibrate` first.")
    newest: dict[tuple, dict] = {}
    for record in records:
        newest[(record["device"], record["backend"], record["phase"], record["name"])] = record
    for dev, backend in sorted({(k[0], k[1]) for k in newest}):
        table = _metrics_table(f"hw:{dev} ({backend})")
        for (d, b, phase, name), record in sorted(newest.items()):
            if (d, b) == (dev, backend):
                _add_metrics_row(table, phase, name, record["selected"], record["n_measurements"], record["metrics"])
        console.print(table)
    console.print("* = chosen by cross-validation; OOR = architectures larger than any trained on.")
