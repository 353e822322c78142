"""``hilnas demo`` / ``make demo``: the main job on embedded defaults.

MobileLLM-Flash end to end (built-in pipeline spec ``flash-demo``): train or load the cached
backbone, calibrate the latency model on this machine's CPU through ExecuTorch, search pruned
candidates on local Ray, verify the front on the device and export the best as ``.pte`` programs.
"""

from __future__ import annotations

import time

from rich.console import Console

from hilnas.settings import get_settings


def run_demo(db_url: str | None, console: Console) -> None:
    from search.families.mobilellm_flash.cli import run_pipeline

    db_url = db_url or get_settings().db_url
    console.print(f"[bold]hilnas demo[/]: MobileLLM-Flash staged search on hw:{get_settings().device}, store {db_url}")
    started = time.perf_counter()
    run_id = run_pipeline("flash-demo", db_url, None, console)
    minutes, seconds = divmod(time.perf_counter() - started, 60)
    console.print(f"Done in {minutes:.0f} min {seconds:.0f} s. Stages and outputs: `hilnas flash show {run_id}`.")
    console.print(f"Artifacts (.pte programs, checkpoints): {get_settings().artifact_dir}")
    console.print(f"Dashboard: `make dashboard` (or `hilnas dashboard`), then open http://127.0.0.1:8501 ({db_url}).")
