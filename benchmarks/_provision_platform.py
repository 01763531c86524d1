"""The provisioning benchmark's platform: the control-plane Postgres, ``howdah api`` and ``howdah conductor`` as
separate processes (as tests/acceptance/test_platform.py runs them), a token made with ``howdah token create
--save``, and instances created, awaited and deleted through the API.

Everything lives under one temporary folder (mode 0755, so that the unprivileged server OS user can reach it
when we run as root); :meth:`Platform.close` stops the processes and every Postgres server under that folder and
removes it, also after a failure or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg

from benchmarks._provision_floor import stop_all_under
from howdah.pg import EmbeddedPostgres
from howdah.pg.processes import free_port
from howdah.schema import install_all

ORG = "bench"
DATA_PLANE = "local"
POLL = 0.1  # seconds between two GETs of an instance that is not Up yet


def _wait(check: Any, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = ""
            if log is not None and log.exists():
                tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"{what} did not happen within {timeout:.0f}s{tail}")
        time.sleep(0.05)


@dataclass
class Created:
    """One instance's create → Up, seen by the client (perf_counter seconds, and wall-clock for the database's
    timestamps, which share this machine's clock)."""

    name: str
    instance_id: str
    seconds: float  # POST sent → first GET that says Up with no active work
    posted_at: float  # time.time() just before the POST
    up_at: float  # time.time() when that GET answered
    db_up_at: datetime | None  # the instance row's updated_at in that answer (the reconciler's Up)


@dataclass
class Platform:
    root: Path
    api_port: int = 0
    token: str = ""
    control: EmbeddedPostgres | None = None
    dsn: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def dataplane_home(self) -> Path:
        return self.root / "dataplane"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "HOWDAH_DATABASE_URL": self.dsn, "XDG_CONFIG_HOME": str(self.root / "config"),
                "COLUMNS": "200"}  # fmt: skip

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self._log(name), "wb") as log:
            # Its own session: a Ctrl-C in the terminal reaches the benchmark, which then stops it in order.
            proc = subprocess.Popen(
                [sys.executable, "-m", "howdah.cli", *args], env=self._env(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.procs[name] = proc
        return proc

    # ------------------------------------------------------------------------------------------- start/stop
    def start(self) -> None:
        self.root.chmod(0o755)
        self.control = EmbeddedPostgres(self.root / "control")
        self.control.start()
        self.dsn = self.control.url()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            install_all(conn)
        self.api_port = free_port()
        api = self._spawn("api", "api", "--port", str(self.api_port))
        _wait(lambda: api.poll() is None and self._healthy(), 90, "the API answering /healthz", self._log("api"))
        done = subprocess.run(
            [sys.executable, "-m", "howdah.cli", "token", "create", "--org", ORG, "--role", "admin", "--name",
             "benchmark", "--save", "--api-url", self.base_url],
            env=self._env(), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"howdah token create failed: {done.stdout}\n{done.stderr}")
        self.token = done.stdout.strip().splitlines()[0].strip()
        self.dataplane_home.mkdir(mode=0o755)
        conductor = self._spawn(
            "conductor", "conductor", "--data-plane", DATA_PLANE, "--home", str(self.dataplane_home)
        )
        log = self._log("conductor")
        _wait(lambda: conductor.poll() is None and "started" in log.read_text(errors="replace"), 90,
              "the conductor starting", log)  # fmt: skip
        _wait(self._data_plane_registered, 60, "the conductor registering its data plane", log)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def _data_plane_registered(self) -> bool:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return (
                conn.execute("SELECT 1 FROM control.data_planes WHERE name = %s", (DATA_PLANE,)).fetchone() is not None
            )

    def stop_processes(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self, tools: Path) -> None:
        """Stop the API and the conductor, every instance server left under the data plane's home, the control
        Postgres; remove the folder."""
        try:
            self.stop_processes()
        finally:
            try:
                stop_all_under(tools, self.dataplane_home)
            finally:
                if self.control is not None:
                    with contextlib.suppress(Exception):
                        self.control.stop(mode="fast")
                shutil.rmtree(self.root, ignore_errors=True)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = "\n".join(self._log(name).read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"the {name} process exited with code {proc.returncode}:\n{tail}")

    # ------------------------------------------------------------------------------------------- instances
    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, headers={"Authorization": f"Bearer {self.token}"},
                                 timeout=30)  # fmt: skip

    async def create(self, client: httpx.AsyncClient, name: str, timeout: float = 300) -> Created:
        """POST an instance and GET it every :data:`POLL` seconds until it is Up with no work in flight."""
        posted_at, began = time.time(), time.perf_counter()
        response = await client.post(f"/api/v1/orgs/{ORG}/instances", json={"name": name, "stack": "standard"})
        if response.status_code != 201 and response.status_code != 202:
            raise RuntimeError(f"POST {name}: {response.status_code} {response.text}")
        instance_id = response.json()["id"]
        deadline = began + timeout
        while True:
            item = (await client.get(f"/api/v1/orgs/{ORG}/instances/{instance_id}")).json()
            if item.get("state") == "Up" and not item.get("has_active_work"):
                elapsed = time.perf_counter() - began
                updated = item.get("updated_at")
                db_up = datetime.fromisoformat(updated) if updated else None
                return Created(name, instance_id, elapsed, posted_at, time.time(), db_up)
            if item.get("state") == "Error":
                raise RuntimeError(f"instance {name} went to Error: {item.get('last_error')}")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"instance {name} not Up after {timeout:.0f}s: {item.get('state')}")
            self.check_alive()
            await asyncio.sleep(POLL)

    async def delete(self, client: httpx.AsyncClient, instance_id: str, timeout: float = 300) -> float:
        """DELETE an instance and wait until it is gone (404 or state Deleted); seconds it took."""
        began = time.perf_counter()
        response = await client.delete(f"/api/v1/orgs/{ORG}/instances/{instance_id}")
        if response.status_code not in (202, 204, 404):
            raise RuntimeError(f"DELETE {instance_id}: {response.status_code} {response.text}")
        while True:
            got = await client.get(f"/api/v1/orgs/{ORG}/instances/{instance_id}")
            if got.status_code == 404 or got.json().get("state") == "Deleted":
                return time.perf_counter() - began
            if time.perf_counter() - began > timeout:
                raise RuntimeError(f"instance {instance_id} not deleted after {timeout:.0f}s: {got.text[:200]}")
            self.check_alive()
            await asyncio.sleep(POLL)

    # ------------------------------------------------------------------------------------------- where time goes
    def create_workflows(self, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Per instance: when its row was created, when the conductor turned the CRUD event into a workflow,
        when a worker started it, its steps (name, started, finished, attempts) and when it finished."""
        out: dict[str, dict[str, Any]] = {}
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT w.id, w.args->>'instance_id', i.created_at, w.created_at, w.started_at, w.finished_at, "
                "w.attempts FROM howdah.workflows w JOIN control.instances i ON i.id::text = w.args->>'instance_id' "
                "WHERE w.name = 'instance_event' AND w.args->>'kind' = 'Create' AND w.args->>'instance_id' = ANY(%s)",
                (instance_ids,),
            ).fetchall()
            for wf_id, iid, row_created, wf_created, wf_started, wf_finished, attempts in rows:
                steps = conn.execute(
                    "SELECT name, started_at, finished_at, attempts FROM howdah.steps WHERE workflow_id = %s "
                    "ORDER BY step_index",
                    (wf_id,),
                ).fetchall()
                out[iid] = {"row_created": row_created, "wf_created": wf_created, "wf_started": wf_started,
                            "wf_finished": wf_finished, "attempts": attempts, "steps": steps}  # fmt: skip
        return out

    # ------------------------------------------------------------------------------------------- memory
    def memory(self) -> dict[str, tuple[int, int, int]]:
        """(RSS, PSS, process count) of the API process, the conductor process and the control Postgres (its
        postmaster and all its children). PSS shares each shared page among the processes mapping it, so the
        Postgres figure is not inflated by shared_buffers counted once per backend."""
        groups: dict[str, list[psutil.Process]] = {}
        for name in ("api", "conductor"):
            proc = psutil.Process(self.procs[name].pid)
            groups[name] = [proc, *proc.children(recursive=True)]
        assert self.control is not None
        pid = self.control.pid()
        if pid is not None:
            postmaster = psutil.Process(pid)
            groups["postgres"] = [postmaster, *postmaster.children(recursive=True)]
        result = {}
        for name, procs in groups.items():
            rss = pss = 0
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    info = proc.memory_full_info()
                    rss += info.rss
                    pss += getattr(info, "pss", info.rss)
            result[name] = (rss, pss, len(procs))
        return result
