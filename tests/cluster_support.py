"""A real multi-node Ray cluster on 127.0.0.1 for tests: a head plus nodes that can be killed one by one.

Every node is a ``ray start --block`` process in its own session, so a test can SIGKILL one node's
whole process group (a machine going away) and the teardown stops exactly these processes: never
``ray stop``, which would also stop the Ray instances of everyone else on this machine. The cluster
has its own temp dir, so other processes' ``ray.init()`` cannot find and join it, and every port is
chosen free, so it does not collide with other clusters running here. Token authentication is off:
the cluster only listens on 127.0.0.1 and lives for one test module.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
#: Dead nodes are noticed within about a second instead of Ray's default fifteen.
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3"}


NODE_PORTS = 6  # every node's own ports: dashboard agent (HTTP, gRPC), runtime-env agent, metrics, raylet, objects


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that nothing on any of this machine's addresses holds right now: probed on the
    wildcard address, since some of Ray's servers bind the machine's own address rather than 127.0.0.1 (seen in
    CI: the head's client server refused a port that was free on 127.0.0.1 only)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def cluster_environment() -> dict[str, str]:
    """What every process talking to the cluster needs: this environment's binaries, no auth, no RAY_ADDRESS."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_ADDRESS": "",
        "RAY_AUTH_MODE": "disabled",
        **FAST_HEALTH_CHECKS,
    }


class NodeExited(RuntimeError):
    """A node's ``ray start`` process ended while the cluster waited for something."""

    def __init__(self, name: str, log_tail: str) -> None:
        super().__init__(f"ray start for {name} exited: {log_tail}")
        self.name = name


@dataclass
class Node:
    name: str
    process: subprocess.Popen
    log: Path
    node_id: str = ""


@dataclass
class LocalCluster:
    """Start with ``start()``; ``add_node`` joins more nodes; ``stop()`` ends every process it started."""

    temp_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hnc", dir="/tmp")))
    nodes: dict[str, Node] = field(default_factory=dict)
    gcs_port: int = 0
    jobs_port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def jobs_address(self) -> str:
        return f"http://127.0.0.1:{self.jobs_port}"

    def start(self, head_cpus: int = 1) -> LocalCluster:
        self._once_more_if_it_exits("head", lambda: self._start_head(head_cpus))
        return self

    def add_node(self, name: str, num_cpus: int, resources: dict[str, float]) -> Node:
        """A worker node offering ``resources``; returns once the cluster sees it alive."""
        return self._once_more_if_it_exits(name, lambda: self._start_node(name, num_cpus, resources))

    def kill_node(self, name: str) -> None:
        """SIGKILL every process of the node at once, as if its machine lost power."""
        node = self.nodes.pop(name)
        os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait(timeout=30)

    def alive_node_ids(self) -> set[str]:
        nodes = json.loads(self._http_get("/nodes?view=summary"))["data"]["summary"]
        return {n["raylet"]["nodeId"] for n in nodes if n["raylet"].get("state") == "ALIVE"}

    def stop(self) -> None:
        for name in reversed(list(self.nodes)):
            node = self.nodes.pop(name)
            try:
                os.killpg(node.process.pid, signal.SIGTERM)
                node.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(node.process.pid, signal.SIGKILL)
                node.process.wait()
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    # ------------------------------------------------------------------ internals

    def _once_more_if_it_exits(self, name: str, start: Callable[[], Node]) -> Node:
        """``start()`` node ``name``, and once more on fresh ports when its ``ray start`` gives up during startup:
        Ray waits a fixed 30 s for a new raylet to register with the GCS, which a loaded 2-core machine has
        exceeded, and a port found free can be taken by another process before Ray binds it (both seen in CI)."""
        try:
            return start()
        except NodeExited as exited:
            if exited.name != name:
                raise
            with contextlib.suppress(ProcessLookupError):  # a raylet the failed start left behind
                os.killpg(self.nodes.pop(name).process.pid, signal.SIGKILL)
            return start()

    def _start_head(self, head_cpus: int) -> Node:
        # One draw for all of the head's ports: separate draws can hand the same free port out twice (seen in CI:
        # the GCS and the dashboard agent both given one port, and ``ray start`` refused it).
        self.gcs_port, self.jobs_port, client, *node_ports = free_ports(3 + NODE_PORTS)
        self._launch(
            "head",
            [
                "--head",
                f"--port={self.gcs_port}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.jobs_port}",
                f"--ray-client-server-port={client}",
                f"--num-cpus={head_cpus}",
                "--resources={}",
            ],
            node_ports,
        )
        self._wait(lambda: self._http_ok("/api/version"), "the Ray head's Jobs API")
        self.nodes["head"].node_id = self._wait_for_node("head")
        return self.nodes["head"]

    def _start_node(self, name: str, num_cpus: int, resources: dict[str, float]) -> Node:
        self._launch(
            name,
            [f"--address={self.address}", f"--num-cpus={num_cpus}", f"--resources={json.dumps(resources)}"],
            free_ports(NODE_PORTS),
        )
        self.nodes[name].node_id = self._wait_for_node(name)
        return self.nodes[name]

    def _launch(self, name: str, arguments: list[str], ports: list[int]) -> None:
        """``ray start`` for one node; ``ports`` are its ``NODE_PORTS`` agent, runtime-env, metrics and raylet
        ports, drawn together with any other port the node is given."""
        agent, agent_grpc, runtime_env, metrics, node_manager, object_manager = ports
        command = [
            str(BIN / "ray"),
            "start",
            "--block",
            "--disable-usage-stats",
            f"--temp-dir={self.temp_dir}",
            "--node-ip-address=127.0.0.1",
            f"--dashboard-agent-listen-port={agent}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}",
            f"--metrics-export-port={metrics}",
            f"--node-manager-port={node_manager}",
            f"--object-manager-port={object_manager}",
            *arguments,
        ]
        log = self.temp_dir / f"{name}.log"
        with log.open("wb") as handle:
            process = subprocess.Popen(
                command, stdout=handle, stderr=subprocess.STDOUT, env=cluster_environment(), start_new_session=True
            )
        self.nodes[name] = Node(name, process, log)

    def _wait_for_node(self, name: str) -> str:
        known = {n.node_id for n in self.nodes.values() if n.node_id}
        found: list[str] = []

        def joined() -> bool:
            found[:] = sorted(self.alive_node_ids() - known)
            return len(found) == 1

        self._wait(joined, f"node {name}")
        return found[0]

    def _wait(self, ready, what: str, timeout: float = 180) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except OSError:
                pass
            for node in self.nodes.values():
                if node.process.poll() is not None:
                    raise NodeExited(node.name, node.log.read_text()[-2000:])
            time.sleep(0.5)
        raise RuntimeError(f"{what} did not come up within {timeout:g} s")

    def _http_get(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.jobs_address}{path}", timeout=5) as response:
            return response.read().decode()

    def _http_ok(self, path: str) -> bool:
        self._http_get(path)
        return True


def hilnas(*args: str, db_url: str, **kwargs) -> subprocess.Popen:
    """``python -m hilnas ARGS`` in the cluster's environment, its store given through HILNAS_DB_URL."""
    return subprocess.Popen(
        [sys.executable, "-m", "hilnas", *args],
        env={**cluster_environment(), "HILNAS_DB_URL": db_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def write_spec(folder: Path, **spec) -> Path:  # noqa: ANN003 - the spec's fields
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path
