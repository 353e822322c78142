"""``hilnas scaling ...``: fit scaling laws over effective tokens and run training sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from hilnas.errors import UserError

if TYPE_CHECKING:
    from search.scaling.evaluation import LawReport

app = typer.Typer(help="Scaling laws over effective training tokens: sweeps and fits.", no_args_is_help=True)
console = Console()

DbOption = Annotated[str | None, typer.Option("--db-url", help="result store (default: HILNAS_DB_URL)")]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def reports_table(reports: list[LawReport], title: str = "scaling-law fits") -> Table:
    """Held-out error at the largest N, correlations overall and within sizes, and fit time, per form."""
    table = Table(
        "form", "held-out rel. err", "Pearson", "Spearman", "within-size Spearman", "fit s", "bootstrap", title=title
    )
    for r in reports:
        held = r.held_out
        held_text = (
            f"{held.mean_rel_error:.2%} (N={held.size:.3g})" if held.failure is None else f"failed: {held.failure}"
        )
        within = [c.spearman for c in r.per_size.values() if c.spearman == c.spearman]
        within_text = f"{min(within):.3f} .. {max(within):.3f}" if within else "n/a"
        boot = r.bootstrap
        table.add_row(
            r.form.name,
            held_text,
            _fmt(r.overall.pearson),
            _fmt(r.overall.spearman),
            within_text,
            f"{r.fit_seconds:.2f}",
            f"{boot.n_requested - boot.n_failed}/{boot.n_requested} ok, {r.bootstrap_seconds:.1f}s",
        )
    return table


def constants_table(reports: list[LawReport], title: str = "fitted constants [95% bootstrap CI]") -> Table:
    """One row per form and constant, so forms with different parameters share a table.

    A constant that ended on its optimisation bound is marked: the data did not determine it.
    """
    table = Table("form", "constant", "value", "95% CI", title=title)
    for r in reports:
        for i, (name, value) in enumerate(r.fit.params.items()):
            low_high = r.intervals.get(name)
            ci = f"[{low_high[0]:.4g}, {low_high[1]:.4g}]" if low_high else "n/a"
            shown = f"{value:.4g}" + (" (at bound)" if name in r.fit.at_bounds else "")
            table.add_row(r.form.name if i == 0 else "", name, shown, ci, end_section=i == len(r.fit.params) - 1)
    return table


@app.command("fit")
def fit(
    csv: Annotated[
        Path | None, typer.Option("--csv", help="CSV with N, D, loss[, diversity, syntheticity, unique_tokens]")
    ] = None,
    sweep: Annotated[int | None, typer.Option("--sweep", help="id of a scaling sweep in the store")] = None,
    form: Annotated[
        list[str] | None, typer.Option("--form", help="D_eff form(s); default: all the data supports")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples of whole model sizes", min=0)] = 100,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
    html: Annotated[Path | None, typer.Option("--html", help="also write the plotly figures as HTML here")] = None,
    db_url: DbOption = None,
) -> None:
    """Fit L = E + A/N^alpha + B/D_eff^beta for the raw-D law and each D_eff form, and store the fits."""
    from search.scaling.data import read_scaling_csv
    from search.scaling.evaluation import evaluate_forms
    from search.scaling.plots import attach_figures
    from search.scaling.store import save_reports, sweep_data

    if (csv is None) == (sweep is None):
        raise UserError("Give exactly one of --csv PATH or --sweep ID.")
    data = read_scaling_csv(csv) if csv is not None else sweep_data(db_url, sweep)
    source = str(csv) if csv is not None else f"sweep:{sweep}"
    reports = evaluate_forms(data, form, n_resamples=bootstrap, seed=seed)
    for report in reports:
        attach_figures(data, report)
    ids = save_reports(db_url, reports, source, sweep_id=sweep)
    console.print(constants_table(reports))
    console.print(reports_table(reports, title=f"scaling-law fits of {source} ({len(data)} points)"))
    if html is not None:
        _write_html(reports, html)
    console.print(f"Stored fits {', '.join(map(str, ids))}.")


def _write_html(reports: list[LawReport], folder: Path) -> None:
    import plotly.io as pio

    folder.mkdir(parents=True, exist_ok=True)
    for report in reports:
        for name, figure_json in report.figures.items():
            pio.from_json(figure_json).write_html(
                folder / f"{report.form.name}-{name}.html", include_plotlyjs="directory"
            )
    console.print(f"Wrote figures to {folder}.")


@app.command("sweep")
def sweep(
    spec: Annotated[str, typer.Argument(help="sweep spec file (YAML/TOML/JSON) or a built-in name: quick, mini")],
    db_url: DbOption = None,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: local)")] = None,
) -> None:
    """Train tiny LMs over model sizes x data mixtures on Ray, recording losses at several token counts."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from search.scaling.spec import load_sweep_spec
    from search.scaling.sweep import run_sweep

    loaded = load_sweep_spec(spec)
    with Progress(
        TextColumn("[bold]runs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("runs", total=None)
        sweep_id = run_sweep(
            loaded,
            db_url,
            address,
            say=lambda line: bar.console.print(line, highlight=False),
            on_run_done=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(f"Sweep {sweep_id} finished; fit it with `hilnas scaling fit --sweep {sweep_id}`.")


@app.command("list")
def list_(db_url: DbOption = None) -> None:
    """Stored scaling-law fits with their held-out error and correlations."""
    from search.scaling.store import fits_frame

    table = Table("id", "source", "form", "points", "held-out err", "Pearson", "Spearman", "created")
    for row in fits_frame(db_url).itertuples():
        held = (
            "n/a"
            if row.held_out_error is None or row.held_out_error != row.held_out_error
            else f"{row.held_out_error:.2%}"
        )
        table.add_row(
            str(row.id),
            row.source,
            row.form,
            str(row.n_points),
            held,
            _fmt(row.pearson),
            _fmt(row.spearman),
            row.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)
