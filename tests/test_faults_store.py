"""The store failing under a search: unreachable at start (one sentence, exit 2) and briefly
unreachable mid-run (the driver waits it out and loses nothing).

The mid-run outage is real but private to this test: the driver reaches PostgreSQL through a TCP
forwarder on 127.0.0.1 that the test pauses, cutting every open connection and refusing new ones,
rather than stopping the server other tests share.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from db.models import HypervolumePoint, Search, Trial
from db.session import StoreUnavailable, retry_transient, session_scope
from search.driver import SearchDriver
from search.spec import parse_spec
from search.study import NUMBER_ATTR, optuna_storage
from tests.cluster_support import free_ports


class PausableForwarder:
    """Forwards 127.0.0.1:<port> to a target port; while paused, drops every connection at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.paused = threading.Event()
        self.refused = 0  # connections turned away while paused: proof the outage was felt
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def pause(self) -> None:
        self.paused.set()
        with self._lock:
            for connection in self._open:
                _drop(connection)
            self._open.clear()

    def resume(self) -> None:
        self.paused.clear()

    def close(self) -> None:
        self.pause()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.paused.is_set():
                self.refused += 1
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open.update((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:  # the other end, or pause(), closed the connection
            pass
        finally:
            for end in (source, sink):
                _drop(end)


def _drop(connection: socket.socket) -> None:
    """Shut the connection down, which also wakes a thread blocked reading it (close() alone would not)."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    connection.close()


def test_an_unreachable_database_at_start_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    (closed_port,) = free_ports(1)
    url = f"postgresql+psycopg://postgres:secret@127.0.0.1:{closed_port}/hilnas"
    result = subprocess.run(
        [sys.executable, "-m", "hilnas", "search", "run", "zdt1", "--trials", "2", "--db-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: Cannot reach the database at postgresql+psycopg://postgres:***@127.0.0.1:{closed_port}/hilnas"
    )
    assert "Traceback" not in result.stderr + result.stdout and "secret" not in result.stderr


def test_a_store_that_stays_away_ends_retrying_with_one_sentence(postgres_url: str) -> None:
    """Past the retry window the wait ends in a ``UserError`` (exit 2 in the CLI), not a traceback."""
    forwarder = PausableForwarder(make_url(postgres_url).port)
    through_forwarder = make_url(postgres_url).set(port=forwarder.port).render_as_string(hide_password=False)
    calls = []

    def count_trials() -> int:
        calls.append(time.monotonic())
        return _finished(through_forwarder)

    assert count_trials() == 0  # reachable: the engine exists and is migrated
    forwarder.pause()
    try:
        with pytest.raises(StoreUnavailable, match=r"^The database at .*\*\*\*@.* stayed unreachable for 2 s: .*\.$"):
            retry_transient(count_trials, through_forwarder, window_s=2)
    finally:
        forwarder.close()
    assert len(calls) >= 4 and forwarder.refused >= 3  # it kept trying, with pauses in between


@pytest.mark.usefixtures("ray_local")
def test_a_database_briefly_unreachable_mid_run_loses_nothing(postgres_url: str) -> None:
    forwarder = PausableForwarder(make_url(postgres_url).port)
    through_forwarder = make_url(postgres_url).set(port=forwarder.port).render_as_string(hide_password=False)
    trials = 20
    spec = parse_spec(
        {
            "name": "store-outage",
            "family": "moo-benchmark",
            "options": {"problem": "zdt1", "n_var": 2, "work_ms": 300},
            "sampler": {"name": "tpe", "seed": 0},
            "budget": {"trials": trials, "batch_size": 4, "max_concurrency": 2},
        }
    )

    def outage() -> None:
        """Once four trials are stored, cut the store off for three seconds."""
        while _finished(postgres_url) < 4:
            time.sleep(0.1)
        forwarder.pause()
        time.sleep(3)
        forwarder.resume()

    warnings = _Recorder()
    db_log = logging.getLogger("hilnas.db")
    # Libraries imported earlier in the session may have disabled this logger or raised the root level.
    db_log.disabled = False
    db_log.setLevel(logging.WARNING)
    db_log.addHandler(warnings)
    cutter = threading.Thread(target=outage, daemon=True)
    cutter.start()
    try:
        result = SearchDriver.start(spec, through_forwarder).run()
    finally:
        forwarder.close()
        logging.getLogger("hilnas.db").removeHandler(warnings)
    cutter.join(timeout=5)

    assert forwarder.refused > 0 and warnings.messages, "the driver never ran into the outage"
    assert all(m.startswith("database unreachable") for m in warnings.messages)
    assert result.finished == trials and result.failed == 0 and result.status == "finished"
    with session_scope(postgres_url) as session:
        rows = list(session.scalars(select(Trial).where(Trial.search_id == result.search_id)))
        assert session.get(Search, result.search_id).status == "finished"
        history = session.scalars(
            select(HypervolumePoint.n_finished).where(HypervolumePoint.search_id == result.search_id)
        ).all()
    assert sorted(t.number for t in rows) == list(range(trials)) and all(t.state == "complete" for t in rows)
    assert len(history) == len(set(history))  # no hypervolume point was written twice
    mirror = optuna.load_study(study_name=f"hilnas-search-{result.search_id}", storage=optuna_storage(postgres_url))
    assert sorted(t.user_attrs[NUMBER_ATTR] for t in mirror.get_trials()) == list(range(trials))


class _Recorder(logging.Handler):
    """Keeps the driver's retry warnings, whatever else configured logging in this process."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _finished(db_url: str) -> int:
    with session_scope(db_url) as session:
        return len(session.scalars(select(Trial.id).where(Trial.state == "complete")).all())
