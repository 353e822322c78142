"""EdgeTAM end to end, in stages that each land in SQL: teacher, calibrate, search, verify, export.

1. teacher: train (or load from the cache) the dense-memory teacher every candidate inherits from, and
   score it on the held-out split.
2. calibrate: measure a designed sample of candidates' per-component latency on the device (through its
   Ray actor, cache first) and fit the latency predictors on per-component FLOPs, bytes and operator
   counts (``features.py``); they are stored in the same table as MobileLLM's, phase ``edgetam_<component>``.
3. search: Optuna on Ray through the normal search driver over the spec's space; quality is J&F after
   inheriting and distilling, per-frame latency the calibrated predictor's, parameters counted; the
   spec's constraints apply.
4. verify: measure the predicted front on the device and store predicted beside measured; when the error
   exceeds what the predictor stated, refit on everything measured and verify the new front.
5. export: the verified front's best candidates' per-frame graphs as ExecuTorch programs, checked
   against PyTorch.

The device never measures while candidates train: measuring stages and the training stages run one after
the other. ``resume`` re-runs only unfinished stages (an interrupted search resumes, it does not restart).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hilnas.errors import UserError
from hilnas.settings import get_settings
from latency_models.measurer import DeviceMeasurer
from latency_models.protocol import timing_label
from search.executor import describe_exception
from search.families.edgetam import FAMILY
from search.families.edgetam.family import EdgeTAMFamily, EdgeTAMOptions
from search.families.edgetam.features import EDGETAM_FEATURES, PHASES, phase_features
from search.families.edgetam.latency import COMPONENTS
from search.families.edgetam.pipeline_spec import EdgeTAMPipelineSpec
from search.family import InvalidCandidate
from search.pareto import pareto_mask
from search.space import CategoricalParam, IntParam, SearchSpace
from search.staged import StageContext, StagedRun
from search.verification import (
    another_round,
    errors_pct,
    feasible,
    needs_refit,
    points_to_measure,
    refit_reasons_between_rounds,
)

KIND = FAMILY
STAGES = ("teacher", "calibrate", "search", "verify", "export")
FRAME = "edgetam_frame"
#: Cheapest first when a categorical choice has no order of its own (the smallest-candidate check).
MEMORY_COST = {"pooled": 0, "perceiver": 1, "dense": 2}


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


class EdgeTAMPipeline:
    """One pipeline run: ``start`` or ``resume`` it, then ``execute``."""

    def __init__(self, run: StagedRun, spec: EdgeTAMPipelineSpec, console: Console, address: str | None) -> None:
        self.run, self.spec, self.console, self.address = run, spec, console, address
        self.db_url = run.db_url
        self.device = spec.device or get_settings().device
        self.family = make_family(spec, self.device, "measured")
        self.workdir = Path(get_settings().artifact_dir) / f"edgetam-run-{run.run_id}"

    @classmethod
    def start(cls, spec: EdgeTAMPipelineSpec, db_url: str, console: Console, address: str | None) -> EdgeTAMPipeline:
        """Check what a user can get wrong before a run is stored: the videos (a damaged DAVIS folder, a
        test-dev split given to train or score on), the space, the constraints against the smallest candidate."""
        device = spec.device or get_settings().device
        family = make_family(spec, device, "measured")
        with console.status("reading the videos"):
            family.videos(spec.recipe.train_split)
            family.held_out_videos()
        parse_search_spec(spec, device, "check")
        check_constraints(spec, family, db_url, console, address)
        run = StagedRun.create(db_url, KIND, spec.name, spec.model_dump(mode="json"), list(STAGES))
        return cls(run, spec, console, address)

    @classmethod
    def resume(cls, run_id: int, db_url: str, console: Console, address: str | None) -> EdgeTAMPipeline:
        run = StagedRun.load(db_url, run_id, KIND)
        return cls(run, EdgeTAMPipelineSpec.model_validate(run.spec()), console, address)

    def execute(self) -> dict[str, dict[str, Any]]:
        functions = {
            "teacher": self._teacher,
            "calibrate": self._calibrate,
            "search": self._search,
            "verify": self._verify,
            "export": self._export,
        }
        return self.run.execute(functions, on_stage=self._announce)

    def _announce(self, stage: str, what: str) -> None:
        self.console.print(f"[bold cyan]stage {STAGES.index(stage) + 1}/{len(STAGES)} {stage}[/]: {what}")

    # ------------------------------------------------------------------ stages

    def _teacher(self, context: StageContext) -> dict[str, Any]:
        from search.families.edgetam.training import evaluate_jf

        cached = self.family.teacher_path().exists()
        with self.console.status("teacher: " + ("loading from the cache" if cached else "training it once")):
            teacher = self.family.teacher()
            quality = evaluate_jf(teacher, self.family.held_out_videos())
        self.console.print(
            f"teacher: {teacher.parameter_count() / 1e6:.2f}M parameters, held-out J&F {100 * quality.jf:.1f} "
            f"({'from the cache' if cached else 'trained'})"
        )
        return {
            "path": str(self.family.teacher_path()),
            "source": "cache" if cached else "trained",
            "architecture": asdict(teacher.config),
            "params": teacher.parameter_count(),
            "heldout": quality.as_metrics(),
        }

    def _calibrate(self, context: StageContext) -> dict[str, Any]:
        import pandas as pd

        from latency_models import storage
        from latency_models.calibration import calibrate

        plan = self.spec.calibration
        measurer = self._measurer("calibration")
        pool = candidate_params(self.family, self._space(), plan.pool, plan.seed)
        frames = {
            phase: pd.DataFrame([phase_features(self.family.config(p), phase) for p in pool])
            for phase in self._fitted_phases()
        }
        with _bar(self.console) as bar:
            task = bar.add_task("calibrate: measuring", total=plan.budget)
            result = calibrate(
                pool,
                lambda params: measurer(params)[0],
                plan.budget,
                plan.initial or max(2, plan.budget * 2 // 3),
                plan.seed,
                on_step=lambda done, _total: bar.update(task, completed=done),
                frames=frames,
                features=EDGETAM_FEATURES,
                label=lambda params: self.family.arch_hash(params)[:12],
            )
        for failure in result.failures:
            self.console.print(f"[yellow]skipped {failure}[/]")
        profile = measurer.profile()  # in the device's actor, where the candidates ran
        storage.save_profile(
            self.db_url, self.device, self.spec.protocol.threads, profile["peaks"], profile["fingerprint"]
        )
        rows = self._stored_rows(frames)
        selected = self._fit(rows, profile["peaks"])
        return {
            "measured": len(result.measured),
            "failures": result.failures,
            "rows_used": len(rows),
            "selected": selected,
        }

    def _search(self, context: StageContext) -> dict[str, Any]:
        from search.driver import SearchDriver
        from search.progress import search_progress

        search_id = context.output_so_far.get("search_id")
        if search_id is None:
            spec = parse_search_spec(self.spec, self.device, f"{self.spec.name} (pipeline run {self.run.run_id})")
            driver = SearchDriver.start(spec, self.db_url)
            context.checkpoint({"search_id": driver.search_id})
        else:
            driver = SearchDriver.resume(search_id, self.db_url)
        self.console.print(f"search {driver.search_id}: {self.spec.search.trials} candidates")
        with search_progress() as on_progress:
            result = driver.run(address=self.address, on_progress=on_progress)
        if result.finished == result.failed:
            raise UserError(
                f"Every candidate of search {result.search_id} failed; see `hilnas search show {result.search_id}`."
            )
        return {key: getattr(result, key) for key in ("search_id", "finished", "failed", "hypervolume")}

    def _verify(self, context: StageContext) -> dict[str, Any]:
        from latency_models.fitting import stated_accuracy

        search_id = context.outputs["search"]["search_id"]
        candidates = finished_candidates(self.db_url, search_id)
        if not candidates:
            raise UserError(f"Search {search_id} finished no candidate, so there is nothing to verify.")
        measurer = self._measurer("verify")
        plan, rounds = self.spec.verify, []
        while True:
            chosen = points_to_measure(
                candidates,
                lambda pool: front(pool, self.spec.constraints, False),
                lambda c: _objective_point(c, _estimate(c, False)),
                plan.max_points,
            )
            with _bar(self.console) as bar:
                task = bar.add_task(f"verify round {len(rounds) + 1}: measuring", total=len(chosen))
                for candidate in chosen:
                    try:
                        rows, _from_cache = measurer(candidate["params"])
                    except Exception as exc:  # an unstable device or a failed export: verify the others
                        candidate["failed"] = describe_exception(exc).splitlines()[0]
                        self.console.print(
                            f"[yellow]trial {candidate['number']} not verified: {candidate['failed']}[/]"
                        )
                    else:
                        candidate["measured"] = {phase: row["median_ms"] for phase, row in rows.items()}
                        link_measurements(self.db_url, rows, candidate, search_id)
                    bar.advance(task)
            errors = errors_pct(chosen)
            stated = {p: stated_accuracy(self.db_url, self.device, self.spec.backend, p)["mape"] for p in errors}
            reasons = needs_refit(errors, stated, plan.tolerance, plan.min_error_pct)
            measured_numbers = [c["number"] for c in chosen]
            rounds.append({"measured": measured_numbers, "errors_pct": errors, "stated_mape": stated, "refit": reasons})
            for phase, values in errors.items():
                self.console.print(
                    f"{phase}: mean |error| {np.mean(np.abs(values)):.1f}% over {len(values)} front points "
                    f"(the predictor states a MAPE of {stated[phase]:.1f}%)"
                )
            if not another_round(plan, reasons, len(rounds), len(chosen)):
                break
            why = refit_reasons_between_rounds(plan, reasons, len(chosen))
            if why:
                self._refit(why, candidates)
        verified = front(candidates, self.spec.constraints, measured_only=True)
        if not verified:
            raise UserError("No measured candidate meets the constraints on the device; loosen them or raise trials.")
        self._print_front(verified)
        return {
            "rounds": rounds,
            "measured": [_public(c) for c in candidates if c.get("measured")],
            "front": [_public(c) for c in verified],
            "not_verified": {str(c["number"]): c["failed"] for c in candidates if c.get("failed")},
        }

    def _refit(self, why: list[str], candidates: list[dict[str, Any]]) -> None:
        """Refit the latency predictors on every stable measurement and re-predict every candidate."""
        self.console.print("[yellow]refitting the latency predictors: " + "; ".join(why) + "[/]")
        rows = self._stored_rows(PHASES)
        self._fit(rows, peaks=None)
        predictor = make_family(self.spec, self.device, "predicted")
        for candidate in candidates:
            predicted = predictor.predicted_ms(predictor.config(candidate["params"]), self.db_url, self.device)
            candidate["predicted"] = {f"edgetam_{k.removesuffix('_ms')}": v for k, v in predicted.items()}

    def _export(self, context: StageContext) -> dict[str, Any]:
        from latency_models.backends import get_backend
        from search.families.edgetam.family import load_checkpoint
        from search.families.edgetam.latency import prepare_components
        from search.recorder import SearchRecorder

        plan = self.spec.export
        search_id = context.outputs["search"]["search_id"]
        chosen = context.outputs["verify"]["front"][: plan.max_models]
        recorder = SearchRecorder(self.db_url, search_id)
        backend = get_backend("executorch-xnnpack")
        exported = []
        with _bar(self.console) as bar:
            task = bar.add_task("export: .pte programs", total=len(chosen))
            for candidate in chosen:
                model = load_checkpoint(candidate["checkpoint"])
                folder = self.workdir / f"trial-{candidate['number']}"
                for name, program in prepare_components(model, backend, folder, plan.graphs).items():
                    path = str(program.prepared.artifact)
                    meta = {"graph": name, "max_abs_diff_vs_eager": program.max_diff, "jf": candidate["jf"]}
                    recorder.add_artifact(candidate["number"], {"kind": "pte", "path": path, "meta": meta})
                    exported.append({"number": candidate["number"], "path": path, **meta})
                bar.advance(task)
        for item in exported:
            self.console.print(f"trial {item['number']} {item['graph']}: {item['path']} (matches PyTorch)")
        return {"artifacts": exported}

    # ------------------------------------------------------------------ helpers

    def _space(self) -> SearchSpace:
        return self.spec.space or self.family.default_space()

    def _fitted_phases(self) -> tuple[str, ...]:
        return PHASES if self.spec.calibration.components else (FRAME,)

    def _stored_rows(self, phases: Collection[str]) -> list[dict[str, Any]]:
        """The device's stable rows of ``phases``, timed as this run times (the predictors' training data)."""
        from latency_models import cache

        rows = cache.load(self.db_url, self.device, self.spec.backend, timing=timing_label(self.spec.protocol))
        return [r for r in rows if r["phase"] in phases]

    def _measurer(self, stage: str) -> DeviceMeasurer:
        return device_measurer(self.db_url, self.spec, self.family, self.address, stage)

    def _fit(self, rows: list[dict[str, Any]], peaks: dict[str, float] | None) -> dict[str, Any]:
        """Fit and store every predictor per fitted phase; returns what the one chosen per phase states, as stored."""
        from latency_models.fitting import fit_and_store, stated_accuracy

        phases = self._fitted_phases()
        fit_and_store(
            self.db_url,
            device=self.device,
            backend=self.spec.backend,
            peaks=peaks,
            rows=rows,
            phases=phases,
            features=EDGETAM_FEATURES,
            # its components are timed beside one reference at the full exponent (``drift_exponent``), so its
            # predictors are fitted on rows as they were timed
            fit_drift=False,
        )
        selected = {}
        for phase in phases:
            stated = selected[phase] = stated_accuracy(self.db_url, self.device, self.spec.backend, phase)
            self.console.print(
                f"{phase}: predictor {stated['predictor']} chosen from {stated['n_measurements']} measurements, "
                f"held-out MAPE {stated['mape']:.1f}% (out of range {stated['out_of_range_mape']:.1f}%)"
            )
        return selected

    def _print_front(self, verified: list[dict[str, Any]]) -> None:
        from rich.table import Table

        table = Table(
            "trial", "J&F", "frame ms", "(pred.)", "mem-attn ms", "params", "memory", "bank", "res.",
            title=f"Verified Pareto front on hw:{self.device} ({self.spec.backend})",
        )  # fmt: skip
        for c in verified:
            config = self.family.config(c["params"])
            table.add_row(
                str(c["number"]),
                f"{100 * c['jf']:.1f}",
                f"{c['measured'][FRAME]:.2f}",
                f"{c['predicted'][FRAME]:.2f}",
                f"{c['measured']['edgetam_memory_attention']:.3f}",
                f"{c['params_count'] / 1e6:.3f}M",
                config.memory
                + (f" {config.global_latents}g+{config.patch_latents}p" if config.memory == "perceiver" else ""),
                str(config.memory_frames),
                str(config.resolution),
            )
        self.console.print(table)


def family_options(spec: EdgeTAMPipelineSpec, device: str, latency: str) -> dict[str, Any]:
    """The edgetam family's options for this run (``latency``: measured or predicted)."""
    predicted = list(COMPONENTS) if spec.calibration.components else ["frame"]
    return {
        **spec.recipe.model_dump(mode="json"),
        "backend": spec.backend,
        "protocol": spec.protocol.model_dump(),
        "latency": latency,
        "predictor_device": device,
        "predicted": predicted,
    }


def make_family(spec: EdgeTAMPipelineSpec, device: str, latency: str) -> EdgeTAMFamily:
    return EdgeTAMFamily(EdgeTAMOptions.model_validate(family_options(spec, device, latency)))


def parse_search_spec(spec: EdgeTAMPipelineSpec, device: str, name: str):  # noqa: ANN201 - a SearchSpec
    """The search stage's spec, validated (its constraints must name metrics the family reports)."""
    from search.spec import parse_spec

    search = spec.search
    data = {
        "name": name,
        "family": FAMILY,
        "device": device,
        "options": family_options(spec, device, "predicted"),
        "constraints": [c.model_dump(exclude_none=True) for c in spec.constraints],
        "space": spec.space.model_dump(mode="json") if spec.space is not None else None,
        "sampler": {"name": search.sampler, "seed": search.seed, "population_size": search.population_size},
        "budget": {
            "trials": search.trials,
            "batch_size": search.batch_size,
            "max_concurrency": search.max_concurrency,
            "trial_timeout_s": search.trial_timeout_s,
        },
    }
    return parse_spec(data, origin="of the EdgeTAM pipeline's search stage")


def device_measurer(
    db_url: str, spec: EdgeTAMPipelineSpec, family: EdgeTAMFamily, address: str | None, stage: str
) -> DeviceMeasurer:
    """Measures on the device's Ray actor, cache first; this process writes the rows."""
    settings = get_settings()
    return DeviceMeasurer(
        db_url=db_url,
        device=spec.device or settings.device,
        backend=spec.backend,
        protocol=spec.protocol,
        family=FAMILY,
        family_options=spec.recipe.model_dump(mode="json"),
        cache_keys=family.cache_keys,
        address=address or settings.ray_address,
        stage=stage,
    )


def smallest_params(space: SearchSpace) -> dict[str, Any]:
    """The least costly point of ``space``: every int at its low end, every numeric choice at its smallest,
    the cheapest memory variant (conditional parameters included only where they apply)."""
    params: dict[str, Any] = {}
    for name, param in space.params.items():
        if param.condition is not None and params.get(param.condition.param) not in param.condition.values:
            continue
        if isinstance(param, IntParam):
            params[name] = param.low
        elif isinstance(param, CategoricalParam):
            params[name] = min(param.choices, key=lambda choice: MEMORY_COST.get(choice, choice))
    return params


def check_constraints(
    spec: EdgeTAMPipelineSpec, family: EdgeTAMFamily, db_url: str, console: Console, address: str | None
) -> None:
    """Refuse constraints no candidate can meet: the smallest candidate is counted and, for a latency
    constraint, measured on the device (the measurement is cached, so calibration may reuse it)."""
    from search.families.edgetam.model import EdgeTAM

    if not spec.constraints:
        return
    params = smallest_params(spec.space or family.default_space())
    try:
        config = family.config(params)
    except InvalidCandidate:
        return  # the space's corners cannot be built: the search itself will judge the constraints
    values = {"params": float(EdgeTAM(config).parameter_count())}
    if any(c.metric.endswith("_ms") for c in spec.constraints):
        console.print("measuring the smallest candidate to check the latency constraints can be met")
        rows, _from_cache = device_measurer(db_url, spec, family, address, "calibration")(params)
        values.update({f"{phase.removeprefix('edgetam_')}_ms": row["median_ms"] for phase, row in rows.items()})
    for constraint in spec.constraints:
        if constraint.metric in values and constraint.violation(values[constraint.metric]) > 0:
            bound = f"<= {constraint.max:g}" if constraint.max is not None else f">= {constraint.min:g}"
            raise UserError(
                f"No architecture in the space can meet {constraint.metric} {bound}: its smallest candidate has "
                f"{constraint.metric} = {values[constraint.metric]:g}."
            )


def candidate_params(family: EdgeTAMFamily, space: SearchSpace, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` distinct buildable candidates of ``space``: the smallest, then random draws."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    found: dict[str, dict[str, Any]] = {}
    first = [smallest_params(space)]
    for _ in range(n * 20):
        if len(found) >= n:
            break
        params = first.pop() if first else space.sample(study.ask())
        arch_hash = family.arch_hash(params)
        if arch_hash is not None:
            found.setdefault(arch_hash, params)
    return list(found.values())


def finished_candidates(db_url: str, search_id: int) -> list[dict[str, Any]]:
    """Complete trials of a search with their J&F, parameters, predicted latency and checkpoint."""
    from sqlalchemy import and_, select

    from db.models import Artifact, Trial
    from db.session import session_scope

    checkpoint = and_(Artifact.trial_id == Trial.id, Artifact.kind == "checkpoint")
    query = (
        select(Trial, Artifact.path)
        .outerjoin(Artifact, checkpoint)
        .where(Trial.search_id == search_id, Trial.state == "complete")
        .order_by(Trial.number)
    )
    with session_scope(db_url) as session:
        return [
            {
                "number": trial.number,
                "trial_id": trial.id,
                "params": trial.params,
                "jf": trial.metrics["jf"],
                "params_count": trial.metrics["params"],
                "predicted": {
                    f"edgetam_{k}": trial.metrics[f"{k}_ms"] for k in COMPONENTS if f"{k}_ms" in trial.metrics
                },
                "checkpoint": path,
            }
            for trial, path in session.execute(query)
            if trial.metrics and "jf" in trial.metrics
        ]


def _estimate(candidate: dict[str, Any], measured_only: bool) -> float | None:
    """Per-frame ms: measured where measured (only that when ``measured_only``), else predicted."""
    measured = (candidate.get("measured") or {}).get(FRAME)
    return measured if measured is not None or measured_only else candidate["predicted"][FRAME]


def _objective_point(candidate: dict[str, Any], frame_ms: float) -> list[float]:
    """(-J&F, frame ms, parameters): the minimised objectives the front and the verify choice are judged by."""
    return [-candidate["jf"], frame_ms, candidate["params_count"]]


def front(candidates: list[dict[str, Any]], constraints: list, measured_only: bool) -> list[dict[str, Any]]:
    """Feasible Pareto-optimal candidates in (J&F up, frame ms down, parameters down), best J&F first."""
    pool = []
    for c in candidates:
        frame_ms = _estimate(c, measured_only)
        values = {"jf": c["jf"], "frame_ms": frame_ms, "params": c["params_count"]}
        if frame_ms is not None and not c.get("failed") and feasible(values, constraints):
            pool.append((c, _objective_point(c, frame_ms)))
    if not pool:
        return []
    mask = pareto_mask(np.array([point for _, point in pool]))
    return sorted((c for (c, _), keep in zip(pool, mask, strict=True) if keep), key=lambda c: -c["jf"])


def link_measurements(db_url: str, rows: dict[str, dict], candidate: dict[str, Any], search_id: int) -> None:
    """Tie the verified candidate's stored measurements to its trial, with the prediction beside each."""
    from sqlalchemy import select

    from db.models import Measurement
    from db.session import session_scope
    from latency_models.cache import key_clause

    with session_scope(db_url) as session:
        for phase, row in rows.items():
            key = key_clause(row["arch_hash"], row["device"], row["backend"], phase, row["shape"])
            for measurement in session.scalars(select(Measurement).where(*key, Measurement.stable)):
                if phase in candidate["predicted"]:
                    measurement.extra = {**(measurement.extra or {}), "predicted_ms": candidate["predicted"][phase]}
                measurement.search_id, measurement.trial_id = search_id, candidate["trial_id"]


def _public(candidate: dict[str, Any]) -> dict[str, Any]:
    keys = ("number", "params", "params_count", "jf", "predicted", "measured", "checkpoint")
    return {k: candidate.get(k) for k in keys}
