"""A terminal progress bar for a running search: trials done, failures and best hypervolume."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from search.driver import Progress as SearchProgress


@contextmanager
def search_progress(enabled: bool = True) -> Iterator[Callable[[SearchProgress], None]]:
    """Yields the callback the driver calls after every batch of finished trials."""
    if not enabled:
        yield lambda _p: None
        return
    columns = (
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TextColumn("hypervolume {task.fields[hv]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("search", total=None, failed=0, hv="n/a")

        def update(p: SearchProgress) -> None:
            hv = "n/a" if p.hypervolume is None else f"{p.hypervolume:.4f}"
            bar.update(task, completed=p.finished, total=p.target, failed=p.failed, hv=hv)

        yield update
