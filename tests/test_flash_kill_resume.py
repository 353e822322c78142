"""A MobileLLM-Flash run killed with SIGKILL mid-search resumes its own search: the finished stages are not
redone, no finished trial is lost or repeated, and the run goes on through verification."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import yaml
from sqlalchemy import select

from db.models import PipelineRun, Search, Trial
from db.session import dispose_engines, session_scope
from tests.cli_support import finished_trials, hilnas_process, wait_for_finished
from tests.flash_support import tiny_spec, write_corpus

TRIALS = 24


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
    first = hilnas_process("flash", "run", str(spec_path), db_url=db_url, start_new_session=True)
    wait_for_finished(db_url, 3, first, timeout_s=400)  # the backbone trains and calibration measures first
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    dispose_engines()
    before = finished_trials(db_url)  # what survived the kill
    assert 3 <= len(before) < TRIALS, "the run must be killed mid-search"
    with session_scope(db_url) as session:
        run_id = session.scalars(select(PipelineRun.id)).one()

    resumed = hilnas_process("flash", "resume", str(run_id), db_url=db_url)
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
