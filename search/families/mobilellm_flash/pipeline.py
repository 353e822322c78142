"""MobileLLM-Flash end to end, in stages that each land in SQL: backbone, calibrate, search, verify, export.

1. backbone: train (or load from the cache, or from a local Hugging Face checkpoint) the parent
   model and score its channels, heads and blocks on calibration activations.
2. calibrate: measure a designed sample of pruned architectures on the device and fit the latency
   predictors (``latency_models.fitting``).
3. search: Optuna on Ray over pruned candidates; quality is the held-out loss after distillation,
   latency the calibrated predictor's estimate, constraints as the spec says.
4. verify: measure the predicted front on the device, store predicted against measured; when the
   error exceeds the predictor's own stated accuracy, refit on everything measured and verify the
   new front, up to ``verify.max_rounds`` times (with ``verify.stop_when_accurate`` off, every round
   refits and measures more of the front).
5. export: the verified front's best candidates as ExecuTorch programs that generate text,
   checked token for token against PyTorch.

The device never measures while candidates train: measuring stages and the training stage run one
after the other. ``resume`` re-runs only unfinished stages (a search stage resumes its search).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hilnas.errors import UserError
from hilnas.settings import get_settings
from latency_models.measurer import DeviceMeasurer
from latency_models.protocol import timing_label
from search.executor import describe_exception
from search.families.mobilellm_flash import FAMILY, verification
from search.families.mobilellm_flash.pipeline_spec import FlashPipelineSpec
from search.families.mobilellm_flash.space import ArchConfig, pruned_candidate, pruned_space
from search.family import InvalidCandidate
from search.space import SearchSpace
from search.staged import StageContext, StagedRun
from search.verification import (
    another_round,
    errors_pct,
    needs_refit,
    points_to_measure,
    refit_reasons_between_rounds,
)

KIND = FAMILY
STAGES = ("backbone", "calibrate", "search", "verify", "export")
IMPORTANCE_WINDOWS = 32


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


@dataclass
class FlashWork:
    """What every stage works with (the spec, the store, the device, where files go) and the stage bodies, each
    with its budget as an explicit argument: ``FlashPipeline`` runs them once in a fixed order, the orchestrating
    agent (``agents.orchestrator``) runs them round after round as its planner decides."""

    spec: FlashPipelineSpec
    db_url: str
    device: str
    address: str | None
    console: Console
    workdir: Path

    def backbone(self) -> dict[str, Any]:
        """Train or load the backbone and rank its blocks, heads and channels on calibration activations."""
        from search.families.mobilellm_flash.backbone import load_or_train_backbone
        from search.families.mobilellm_flash.importance import compute_importance

        backbone = load_or_train_backbone(self.spec.backbone, show_progress=True)
        calibration = _calibration_windows(backbone.train_tokens, backbone.model.config.max_context, self.spec)
        with torch.no_grad():
            importance = compute_importance(backbone.model, calibration)
        self.workdir.mkdir(parents=True, exist_ok=True)
        importance_path = self.workdir / "importance.json"
        importance_path.write_text(json.dumps(importance.to_dict()))
        config = backbone.model.config
        self.console.print(
            f"backbone {backbone.key[:12]}: {config.n_params() / 1e6:.2f}M parameters, "
            f"held-out loss {backbone.info['heldout']['loss']:.3f} ({backbone.info['source']})"
        )
        return {
            "path": str(backbone.path),
            "key": backbone.key,
            "arch": config.model_dump(mode="json"),
            "params": config.n_params(),
            "source": backbone.info["source"],
            "heldout": backbone.info["heldout"],
            "training": {k: v for k, v in (backbone.info.get("training") or {}).items() if k != "loss_curve"},
            "importance_path": str(importance_path),
        }

    def calibrate(
        self, backbone: dict[str, Any], budget: int, seed: int, space: SearchSpace | None = None
    ) -> dict[str, Any]:
        """Measure up to ``budget`` architectures drawn from ``space`` (default: the whole pruned space) and fit
        every latency predictor on all the device's stable measurements. ``device_measurements`` counts the
        architectures the device measured (cached ones cost nothing)."""
        from latency_models import cache, storage
        from latency_models.calibration import Candidate, calibrate
        from latency_models.fitting import fit_and_store

        arch = ArchConfig.model_validate(backbone["arch"])
        measurer = self.measurer(backbone, "calibration")
        plan = self.spec.calibration
        pool = [
            Candidate(params, pruned_candidate(params, arch), self.spec.workload)
            for params in candidate_params(arch, self.spec, plan.pool, seed, space)
        ]
        fresh = 0

        def measure(candidate: Candidate) -> dict[str, dict]:
            nonlocal fresh
            rows, from_cache = measurer(candidate.params)
            fresh += not from_cache
            return rows

        with _bar(self.console) as bar:
            task = bar.add_task("calibrate: measuring", total=budget)
            result = calibrate(
                pool,
                measure,
                budget,
                plan.initial or max(2, budget * 2 // 3),
                seed,
                on_step=lambda done, _total: bar.update(task, completed=done),
            )
        for failure in result.failures:
            self.console.print(f"[yellow]skipped {failure}[/]")
        profile = measurer.profile()  # in the device's actor, where the candidates ran
        peaks = profile["peaks"]
        storage.save_profile(self.db_url, self.device, self.spec.protocol.threads, peaks, profile["fingerprint"])
        timing = timing_label(self.spec.protocol)
        reports = fit_and_store(self.db_url, device=self.device, backend=self.spec.backend, peaks=peaks, timing=timing)
        selected = {
            phase: next(
                ({"name": r.name, "cv_mape": r.cv_mape, "metrics": r.metrics} for r in phase_reports if r.selected),
                None,
            )
            for phase, phase_reports in reports.items()
        }
        for phase, chosen in selected.items():
            if chosen is not None:
                mape = chosen["metrics"]["random"]["mape"]
                self.console.print(f"{phase}: predictor {chosen['name']} chosen, held-out MAPE {mape:.1f}%")
        n_rows = len(cache.load(self.db_url, self.device, self.spec.backend, timing=timing))
        return {
            "measured": len(result.measured),
            "device_measurements": fresh,
            "failures": result.failures,
            "rows_used": n_rows,
            "selected": selected,
        }

    def search(
        self,
        backbone: dict[str, Any],
        context: StageContext,
        name: str,
        trials: int,
        seed: int | None = None,
        space: SearchSpace | None = None,
        objectives: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A search of ``trials`` pruned candidates on predicted latency (over ``space``, default the whole pruned
        space, and ``objectives``, default the family's); the search id is checkpointed first, so a resumed stage
        resumes the search instead of starting another one."""
        from search.driver import SearchDriver
        from search.progress import search_progress
        from search.spec import parse_spec

        search_id = context.output_so_far.get("search_id")
        if search_id is None:
            data = search_spec(self.spec, backbone, self.device, "predicted", name)
            data["budget"]["trials"] = trials
            if seed is not None:
                data["sampler"]["seed"] = seed
            if space is not None:
                data["space"] = space.model_dump(mode="json", exclude_none=True)
            if objectives is not None:
                data["objectives"] = objectives
            spec = parse_spec(data, origin=name)
            driver = SearchDriver.start(spec, self.db_url)
            context.checkpoint({"search_id": driver.search_id})
        else:
            driver = SearchDriver.resume(search_id, self.db_url)
        self.console.print(f"search {driver.search_id}: {driver.spec.budget.trials} pruned candidates")
        with search_progress() as on_progress:
            result = driver.run(address=self.address, on_progress=on_progress)
        if result.finished == result.failed:
            error = first_error(self.db_url, result.search_id)
            raise UserError(
                f"Every candidate of search {result.search_id} failed (first error: {error}); "
                f"see `hilnas search show {result.search_id}`."
            )
        return {
            "search_id": result.search_id,
            "finished": result.finished,
            "failed": result.failed,
            "hypervolume": result.hypervolume,
        }

    def measure_front(
        self, candidates: list[dict[str, Any]], measurer: DeviceMeasurer, max_points: int, title: str
    ) -> tuple[list[dict[str, Any]], int]:
        """Measure up to ``max_points`` not yet measured candidates of the predicted front (the spec's constraints
        judged on the best-known latency), where it has the most hypervolume; each gets ``measured`` or
        ``failed``. Returns the chosen candidates and how many the device measured (cached ones cost nothing)."""
        chosen = points_to_measure(
            candidates,
            lambda pool: verification.front(pool, self.spec.constraints, False),
            lambda c: verification.objective_points([c])[0],
            max_points,
        )
        fresh = 0
        with _bar(self.console) as bar:
            task = bar.add_task(f"{title}: measuring", total=len(chosen))
            for candidate in chosen:
                try:
                    rows, from_cache = measurer(candidate["params"])
                except Exception as exc:  # an unstable device or a failed export: verify the others
                    reason = candidate["failed"] = describe_exception(exc).splitlines()[0]
                    self.console.print(f"[yellow]trial {candidate['number']} not verified: {reason}[/]")
                    fresh += 1
                else:
                    link_verification(self.db_url, rows, candidate, candidate.get("search_id"))
                    candidate["measured"] = {phase: row["median_ms"] for phase, row in rows.items()}
                    fresh += not from_cache
                bar.advance(task)
        return chosen, fresh

    def prediction_errors(self, chosen: list[dict[str, Any]], tolerance: float, min_error_pct: float) -> dict:
        """How far the predictor was off on the measured ``chosen`` candidates, against what it promised, and
        the phases that need a refit (with the reason)."""
        from latency_models.fitting import stated_accuracy

        errors = errors_pct(chosen)
        stated = {p: stated_accuracy(self.db_url, self.device, self.spec.backend, p)["mape"] for p in errors}
        reasons = needs_refit(errors, stated, tolerance, min_error_pct)
        for phase, values in errors.items():
            if values:
                mean_abs = sum(abs(v) for v in values) / len(values)
                promised = "unknown" if stated[phase] is None else f"{stated[phase]:.1f}%"
                self.console.print(
                    f"{phase}: mean |error| {mean_abs:.1f}% over {len(values)} front points "
                    f"(the predictor states a MAPE of {promised})"
                )
        return {
            "measured": [c["number"] for c in chosen],
            "errors_pct": errors,
            "stated_mape": stated,
            "refit": reasons,
        }

    def repredict(self, candidates: list[dict[str, Any]], backbone: dict[str, Any]) -> None:
        """Replace every candidate's predicted latency with the currently selected predictor's."""
        from latency_models.fitting import predict_ms

        arch = ArchConfig.model_validate(backbone["arch"])
        for candidate in candidates:
            estimate = predict_ms(
                self.db_url,
                self.device,
                self.spec.backend,
                pruned_candidate(candidate["params"], arch),
                self.spec.workload,
            )
            candidate["predicted"] = {phase: ms for phase, (ms, _std) in estimate.items()}

    def export(self, backbone: dict[str, Any], front: list[dict[str, Any]], search_id: int | None) -> dict[str, Any]:
        """``front``'s candidates as ExecuTorch programs that generate text, checked token for token against
        PyTorch and recorded as artifacts of their search (a candidate's own ``search_id``, else ``search_id``)."""
        from search.families.mobilellm_flash.backbone import load_backbone
        from search.families.mobilellm_flash.export import export_program, generate_eager, generate_with_program
        from search.families.quant_rotation.checkpoint import load_model
        from search.recorder import SearchRecorder

        loaded = load_backbone(backbone["path"])
        tokenizer = loaded.tokenizer
        plan = self.spec.export
        prompt = tokenizer.encode(plan.prompt)
        context_len = self.spec.workload.prefill_len
        exported = []
        with _bar(self.console) as bar:
            task = bar.add_task("export: .pte programs", total=len(front))
            for candidate in front:
                model = load_model(candidate["checkpoint"])
                new_tokens = min(plan.new_tokens, model.config.max_context - context_len)
                path = export_program(
                    model, context_len, self.workdir / f"trial-{candidate['number']}.pte", tokenizer.separator_id
                )
                from_program = generate_with_program(path, model, prompt, new_tokens)
                from_eager = generate_eager(model, prompt, new_tokens, context_len, tokenizer.separator_id)
                text = tokenizer.decode(from_program)
                meta = {
                    "prompt": plan.prompt,
                    "generated": text,
                    "matches_pytorch": from_program == from_eager,
                    "context_len": context_len,
                    "methods": ["prefill", "decode"],
                    "tokenizer": str(Path(loaded.path) / "tokenizer.json"),
                }
                recorder = SearchRecorder(self.db_url, candidate.get("search_id") or search_id)
                recorder.add_artifact(candidate["number"], {"kind": "pte", "path": str(path), "meta": meta})
                exported.append({"number": candidate["number"], "path": str(path), **meta})
                bar.advance(task)
        for item in exported:
            status = "same tokens as PyTorch" if item["matches_pytorch"] else "[red]differs from PyTorch[/]"
            self.console.print(
                f"trial {item['number']}: {item['path']} ({status})\n  {plan.prompt}[green]{item['generated']}[/]"
            )
        return {"artifacts": exported}

    def measurer(self, backbone: dict[str, Any], stage: str) -> DeviceMeasurer:
        options = family_options(self.spec, backbone, self.device, latency="measured")
        return device_measurer(self.db_url, self.spec, options, self.address, stage)

    def print_front(self, front: list[dict[str, Any]], backbone: dict[str, Any]) -> None:
        from rich.table import Table

        arch_config = ArchConfig.model_validate(backbone["arch"])
        table = Table(
            "trial",
            "loss",
            "ppl",
            "prefill ms",
            "(pred.)",
            "decode ms",
            "(pred.)",
            "params",
            "attention",
            title=f"Verified Pareto front on hw:{self.device} ({self.spec.backend})",
        )
        for c in front:
            arch = pruned_candidate(c["params"], arch_config)
            pattern = "".join({"full": "F", "local": "L", "skip": "-"}[layer.attention] for layer in arch.layers)
            table.add_row(
                str(c["number"]),
                f"{c['loss']:.3f}",
                f"{c['ppl']:.1f}",
                f"{c['measured']['prefill']:.2f}",
                f"{c['predicted']['prefill']:.2f}",
                f"{c['measured']['decode']:.3f}",
                f"{c['predicted']['decode']:.3f}",
                f"{arch.n_params() / 1e6:.2f}M",
                pattern + (f" w{arch.window}" if "L" in pattern else ""),
            )
        self.console.print(table)
        self.console.print("attention: F full, L local (window w), - skipped")


class FlashPipeline:
    """One pipeline run: ``start`` or ``resume`` it, then ``execute``."""

    def __init__(self, run: StagedRun, spec: FlashPipelineSpec, console: Console, address: str | None) -> None:
        self.run, self.spec, self.console, self.address = run, spec, console, address
        self.db_url = run.db_url
        self.device = spec.device or get_settings().device
        self.workdir = Path(get_settings().artifact_dir) / f"flash-run-{run.run_id}"
        self.work = FlashWork(spec, self.db_url, self.device, address, console, self.workdir)

    @classmethod
    def start(cls, spec: FlashPipelineSpec, db_url: str, console: Console, address: str | None) -> FlashPipeline:
        """Check everything a user can get wrong before a run is stored: the backbone is built (or loaded from
        the cache) here, so a bad checkpoint or corpus, or constraints nothing can meet, store nothing."""
        from search.families.mobilellm_flash.backbone import load_or_train_backbone

        backbone = load_or_train_backbone(spec.backbone, show_progress=True)
        check_constraints(spec, backbone.model.config, db_url, console, address)
        run = StagedRun.create(db_url, KIND, spec.name, spec.model_dump(mode="json"), list(STAGES))
        return cls(run, spec, console, address)

    @classmethod
    def resume(cls, run_id: int, db_url: str, console: Console, address: str | None) -> FlashPipeline:
        run = StagedRun.load(db_url, run_id, KIND)
        return cls(run, FlashPipelineSpec.model_validate(run.spec()), console, address)

    def execute(self) -> dict[str, dict[str, Any]]:
        functions = {
            "backbone": lambda _context: self.work.backbone(),
            "calibrate": lambda c: self.work.calibrate(
                c.outputs["backbone"], self.spec.calibration.budget, self.spec.calibration.seed
            ),
            "search": lambda c: self.work.search(
                c.outputs["backbone"], c, f"{self.spec.name} (pipeline run {self.run.run_id})", self.spec.search.trials
            ),
            "verify": self._verify,
            "export": lambda c: self.work.export(
                c.outputs["backbone"],
                c.outputs["verify"]["front"][: self.spec.export.max_models],
                c.outputs["search"]["search_id"],
            ),
        }
        return self.run.execute(functions, on_stage=self._announce)

    def _announce(self, stage: str, what: str) -> None:
        position = STAGES.index(stage) + 1
        self.console.print(f"[bold cyan]stage {position}/{len(STAGES)} {stage}[/]: {what}")

    def _verify(self, context: StageContext) -> dict[str, Any]:
        """Measure the predicted front; while the error exceeds what the predictor promised (or, with
        ``verify.stop_when_accurate`` off, in every round), refit on everything measured and measure more of the
        front, up to ``verify.max_rounds`` rounds."""
        from latency_models.fitting import fit_and_store

        search_id = context.outputs["search"]["search_id"]
        backbone = context.outputs["backbone"]
        candidates = finished_candidates(self.db_url, search_id)
        if not candidates:
            raise UserError(f"Search {search_id} finished no candidate, so there is nothing to verify.")
        measurer = self.work.measurer(backbone, "verify")
        plan = self.spec.verify
        rounds: list[dict[str, Any]] = []
        while True:
            title = f"verify round {len(rounds) + 1}"
            chosen, _fresh = self.work.measure_front(candidates, measurer, plan.max_points, title)
            rounds.append(self.work.prediction_errors(chosen, plan.tolerance, plan.min_error_pct))
            reasons = rounds[-1]["refit"]
            if not another_round(plan, reasons, len(rounds), len(chosen)):
                break
            why = refit_reasons_between_rounds(plan, reasons, len(chosen))
            if why:
                self.console.print("[yellow]refitting the latency predictor: " + "; ".join(why) + "[/]")
                fit_and_store(
                    self.db_url,
                    device=self.device,
                    backend=self.spec.backend,
                    peaks=None,
                    timing=timing_label(self.spec.protocol),
                )
                self.work.repredict(candidates, backbone)
        verified = verification.front(candidates, self.spec.constraints, measured_only=True)
        if not verified:
            raise UserError(
                "No measured candidate meets the constraints on the device; loosen them or raise search.trials."
            )
        self.work.print_front(verified, backbone)
        return {
            "rounds": rounds,
            "measured": [public(c) for c in candidates if c.get("measured")],
            "front": [public(c) for c in verified],
            "not_verified": {c["number"]: c["failed"] for c in candidates if c.get("failed")},
        }


def family_options(spec: FlashPipelineSpec, backbone: dict[str, Any], device: str, latency: str) -> dict[str, Any]:
    """The mobilellm-flash family's options for pruned candidates of the backbone stage's output."""
    search = spec.search
    return {
        "backend": spec.backend,
        "protocol": spec.protocol.model_dump(),
        "backbone_path": backbone["path"],
        "backbone_arch": backbone["arch"],
        "importance_path": backbone["importance_path"],
        "workload": spec.workload.model_dump(),
        "latency": latency,
        "predictor_device": device,
        "distill_tokens": search.distill_tokens,
        "distill_batch": search.distill_batch,
        "threads": search.threads,
        "multiple_choice": spec.multiple_choice,
    }


def search_spec(
    spec: FlashPipelineSpec,
    backbone: dict[str, Any],
    device: str,
    latency: str,
    name: str,
    sampler: str | None = None,
) -> dict[str, Any]:
    """A search over pruned candidates as the pipeline's spec asks (``latency``: predicted or measured)."""
    search = spec.search
    return {
        "name": name,
        "family": FAMILY,
        "device": device,
        "options": family_options(spec, backbone, device, latency),
        "constraints": [c.model_dump(exclude_none=True) for c in spec.constraints],
        "sampler": {"name": sampler or search.sampler, "seed": search.seed, "population_size": search.population_size},
        "budget": {
            "trials": search.trials,
            "batch_size": search.batch_size,
            "max_concurrency": search.max_concurrency,
            "trial_timeout_s": search.trial_timeout_s,
            "cpus_per_trial": float(search.threads),
            # A search measuring on the device trains on the same machine: never both at once (see DESIGN).
            "measure_alone": latency == "measured",
        },
    }


def device_measurer(
    db_url: str, spec: FlashPipelineSpec, options: dict[str, Any], address: str | None, stage: str
) -> DeviceMeasurer:
    """Measures on the device's Ray actor, cache first; this process writes the rows."""
    return DeviceMeasurer(
        db_url,
        spec.device or get_settings().device,
        spec.backend,
        spec.protocol,
        address=address or get_settings().ray_address,
        stage=stage,
        family_options=options,
    )


def check_constraints(
    spec: FlashPipelineSpec, arch: ArchConfig, db_url: str, console: Console, address: str | None
) -> None:
    """Refuse a spec whose constraints no candidate can meet (see ``smallest_candidate_values``)."""
    values, _fresh = smallest_candidate_values(spec, arch, db_url, console, address)
    problem = unmeetable_constraint(spec, values)
    if problem is not None:
        raise UserError(problem)


def smallest_candidate_values(
    spec: FlashPipelineSpec, arch: ArchConfig, db_url: str, console: Console, address: str | None
) -> tuple[dict[str, float], bool]:
    """The smallest pruning of the backbone ``arch``: its parameter count and, when a constraint bounds latency,
    its latency measured on the device (cached for calibration); and whether the device measured it just now."""
    if spec.workload.context > arch.max_context:
        raise UserError(
            f"The workload needs {spec.workload.context} positions but the backbone covers {arch.max_context}."
        )
    params = extreme_params(arch, spec, smallest=True)
    smallest = pruned_candidate(params, arch)
    values = {"params": float(smallest.n_params())}
    fresh = False
    if any(c.metric in ("prefill_ms", "decode_ms") for c in spec.constraints):
        console.print("measuring the smallest candidate to check the latency constraints can be met")
        options = {
            "backend": spec.backend,
            "protocol": spec.protocol.model_dump(),
            "latency": "measured",
            "backbone_arch": arch.model_dump(mode="json"),
            "workload": spec.workload.model_dump(),
        }
        rows, from_cache = device_measurer(db_url, spec, options, address, "calibration")(params)
        values.update({f"{phase}_ms": row["median_ms"] for phase, row in rows.items()})
        fresh = not from_cache
    return values, fresh


def unmeetable_constraint(spec: FlashPipelineSpec, values: dict[str, float]) -> str | None:
    """Why no candidate can meet the constraints, given the smallest candidate's ``values``; None when it can."""
    for constraint in spec.constraints:
        if constraint.metric in values and constraint.violation(values[constraint.metric]) > 0:
            bound = f"<= {constraint.max:g}" if constraint.max is not None else f">= {constraint.min:g}"
            return (
                f"No architecture in the space can meet {constraint.metric} {bound}: the smallest pruning of the "
                f"backbone has {constraint.metric} = {values[constraint.metric]:g}."
            )
    return None


def extreme_params(backbone: ArchConfig, spec: FlashPipelineSpec, smallest: bool) -> dict[str, Any]:
    """The least costly point of the pruned space (fewest, narrowest layers; one local layer, the rest
    skipped) or the costliest (the whole backbone with full attention everywhere)."""
    space = pruned_space(backbone, spec.workload).params
    pick = min if smallest else max
    n_layers = space["n_layers"].low if smallest else space["n_layers"].high
    return {
        "n_layers": n_layers,
        "dim": pick(space["dim"].choices),
        "n_kv_heads": 1 if smallest else space["n_kv_heads"].high,
        "heads_per_kv": 1 if smallest else space["heads_per_kv"].high,
        "ffn_dim": [space["ffn_dim"].item.low if smallest else space["ffn_dim"].item.high] * n_layers,
        "attention": ["local"] + ["skip"] * (n_layers - 1) if smallest else ["full"] * n_layers,
        "window": pick(space["window"].choices),
    }


def candidate_params(
    backbone: ArchConfig, spec: FlashPipelineSpec, n: int, seed: int, space: SearchSpace | None = None
) -> list[dict[str, Any]]:
    """``n`` distinct valid candidates of the pruned space: the smallest and the largest, then random draws.
    With a ``space`` (a part of the pruned space), random draws from it alone."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    found: dict[str, dict[str, Any]] = {}
    extremes = iter(
        [extreme_params(backbone, spec, True), extreme_params(backbone, spec, False)] if space is None else []
    )
    space = space or pruned_space(backbone, spec.workload)
    for _ in range(n * 20):
        if len(found) >= n:
            break
        params = next(extremes, None) or space.sample(study.ask())
        try:
            found.setdefault(pruned_candidate(params, backbone).arch_hash(), params)
        except InvalidCandidate:
            continue
    return list(found.values())


def finished_candidates(db_url: str, search_id: int) -> list[dict[str, Any]]:
    """Complete, feasible-or-not trials of a search with their loss, predicted latency and checkpoint."""
    from sqlalchemy import select

    from db.models import Artifact, Trial
    from db.session import session_scope

    with session_scope(db_url) as session:
        trials = session.scalars(select(Trial).where(Trial.search_id == search_id, Trial.state == "complete")).all()
        checkpoints = {
            a.trial_id: a.path
            for a in session.scalars(
                select(Artifact).where(Artifact.search_id == search_id, Artifact.kind == "checkpoint")
            )
        }
        return [
            {
                "number": t.number,
                "trial_id": t.id,
                "params": t.params,
                "loss": t.metrics["loss"],
                "ppl": t.metrics.get("ppl"),
                "params_count": t.metrics.get("params"),
                "predicted": {phase: t.metrics[f"{phase}_ms"] for phase in verification.PHASES},
                "checkpoint": checkpoints.get(t.id),
                "search_id": search_id,
            }
            for t in trials
            if t.metrics and "loss" in t.metrics
        ]


def first_error(db_url: str, search_id: int) -> str:
    from sqlalchemy import select

    from db.models import Trial
    from db.session import session_scope

    with session_scope(db_url) as session:
        error = session.scalar(select(Trial.error).where(Trial.search_id == search_id, Trial.error.is_not(None)))
    return (error or "none recorded").splitlines()[0]


def link_verification(db_url: str, rows: dict[str, dict], candidate: dict[str, Any], search_id: int | None) -> None:
    """Store the prediction beside the measurement of a verified candidate (``extra["predicted_ms"]``) and link
    the measurement to the trial; a measurement reused from the cache is linked, not duplicated."""
    from sqlalchemy import select

    from db.models import Measurement
    from db.session import session_scope
    from latency_models.cache import key_clause

    with session_scope(db_url) as session:
        for phase, row in rows.items():
            key = key_clause(row["arch_hash"], row["device"], row["backend"], phase, row["shape"])
            measurement = session.scalar(select(Measurement).where(*key, Measurement.stable))
            if measurement is None:
                continue
            measurement.extra = {**(measurement.extra or {}), "predicted_ms": float(candidate["predicted"][phase])}
            measurement.search_id, measurement.trial_id = search_id, candidate["trial_id"]


def _calibration_windows(tokens, max_context: int, spec: FlashPipelineSpec) -> torch.Tensor:  # noqa: ANN001
    """Seeded windows of the train split whose activations rank the backbone's blocks, heads and channels."""
    import numpy as np

    from search.families.mobilellm_flash.backbone import random_windows

    length = min(spec.backbone.seq_len, max_context)
    return random_windows(tokens, IMPORTANCE_WINDOWS, length, np.random.default_rng(spec.calibration.seed))


def public(candidate: dict[str, Any]) -> dict[str, Any]:
    """What a stage output keeps of a candidate."""
    keys = ("number", "search_id", "params", "params_count", "loss", "ppl", "predicted", "measured", "checkpoint")
    return {k: candidate[k] for k in keys if k in candidate}
