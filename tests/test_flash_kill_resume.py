"""A MobileLLM-Flash run killed with SIGKILL mid-search resumes its own search: the finished stages are not
redone, no finished trial is lost or repeated, and the run goes on through verification."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from sqlalchemy import select

from db.models import PipelineRun, Search, Trial
from db.session import dispose_engines, session_scope
from tests.flash_support import tiny_spec, write_corpus

TRIALS = 24


def _hilnas(*args: str, db_url: str, **kwargs: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hilnas", *args],
        env=dict(os.environ, HILNAS_DB_URL=db_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def _complete_trials(db_url: str) -> dict[int, dict]:
    with session_scope(db_url) as session:
        return {t.number: t.values for t in session.scalars(select(Trial).where(Trial.state == "complete"))}


def _wait_for_trials(db_url: str, count: int, process: subprocess.Popen) -> None:
    """Poll the store until the pipeline's search has finished ``count`` trials (backbone and calibration first)."""
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        time.sleep(0.5)
        assert process.poll() is None, process.stdout.read()
        try:
            if len(_complete_trials(db_url)) >= count:
                return
        except Exception:  # the schema may not exist yet in the first instants
            dispose_engines()
    raise AssertionError(f"the search did not finish {count} trials in time")


def test_a_flash_run_killed_mid_search_resumes_its_search_without_loss_or_duplicates(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'flash-kill.db'}"
    corpus = write_corpus(tmp_path / "corpus.txt")
    spec = tiny_spec(
        corpus,
        name="flash-killed",
        search={"trials": TRIALS, "batch_size": 2, "max_concurrency": 2, "population_size": 4, "distill_tokens": 8192},
        export={"max_models": 0},
    )
    spec_path = tmp_path / "flash.yaml"
    spec_path.write_text(yaml.safe_dump(spec))

    # The pipeline and the Ray instance it starts share one session, so killpg is a whole-machine crash.
    first = _hilnas("flash", "run", str(spec_path), db_url=db_url, start_new_session=True)
    _wait_for_trials(db_url, 3, first)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    dispose_engines()
    before = _complete_trials(db_url)
    assert 3 <= len(before) < TRIALS, "the run must be killed mid-search"
    with session_scope(db_url) as session:
        run_id = session.scalars(select(PipelineRun.id)).one()

    resumed = _hilnas("flash", "resume", str(run_id), db_url=db_url)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert output.count("skipped (done)") == 2, output  # backbone and calibrate are not redone

    dispose_engines()
    with session_scope(db_url) as session:
        search_ids = list(session.scalars(select(Search.id)))
        assert len(search_ids) == 1  # the resumed stage went on with its own search, it did not start another
        trials = list(session.scalars(select(Trial).where(Trial.search_id == search_ids[0])))
        run = session.get(PipelineRun, run_id)
        assert run.status == "finished"
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == TRIALS
    assert {t.state for t in trials} <= {"complete", "invalid"}, [t.state for t in trials]  # none left running
    after = {t.number: t.values for t in trials}
    assert all(after[n] == values for n, values in before.items())  # finished trials untouched
    assert "Verified Pareto front" in output
