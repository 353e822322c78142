"""The one table layout for predictor accuracy, shared by ``hilnas latency`` and the latency benchmark."""

from __future__ import annotations

from typing import Any

from rich.table import Table

METRIC_COLUMNS = (
    "phase",
    "predictor",
    "n train",
    "CV MAPE",
    "MAPE",
    "RMSPE",
    "p90 APE",
    "±5%",
    "±10%",
    "tau",
    "OOR MAPE",
    "OOR ±10%",
    "OOR tau",
    "noise MAPE",
)
#: Printed under the table: what the marks and abbreviations mean.
LEGEND = (
    "* = chosen by 5-fold cross-validation among the learned predictors; APE = absolute percentage error; "
    "OOR = out-of-range split (architectures larger than any trained on); noise = re-measuring the same architecture."
)


def metrics_table(title: str) -> Table:
    """An empty table with one column per metric; fill it with ``add_metrics_row``."""
    table = Table(title=title)
    for column in METRIC_COLUMNS:
        table.add_column(column, justify="right")
    return table


def _percent(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}%"


def _tau(value: float | None) -> str:
    """Kendall's tau; None (stored for a split of one point, where it is undefined) reads n/a."""
    return "n/a" if value is None else f"{value:.3f}"


def add_metrics_row(
    table: Table,
    phase: str,
    name: str,
    selected: bool,
    n_train: int,
    metrics: dict[str, Any],
    cv_mape: float | None = None,
) -> None:
    """One predictor's row; ``metrics`` as stored: {"random", "out_of_range", optional "noise_floor"}."""
    rnd, out, floor = metrics["random"], metrics["out_of_range"], metrics.get("noise_floor")
    table.add_row(
        phase,
        name + (" *" if selected else ""),
        str(n_train),
        _percent(cv_mape),
        _percent(rnd["mape"]),
        _percent(rnd["rmspe"]),
        _percent(rnd.get("p90_ape")),  # absent on predictors stored before it was recorded
        f"{rnd['within_5']:.0%}",
        f"{rnd['within_10']:.0%}",
        _tau(rnd["kendall_tau"]),
        _percent(out["mape"]),
        f"{out['within_10']:.0%}",
        _tau(out["kendall_tau"]),
        _percent(floor["mape"]) if floor else "n/a",
    )
