"""A one-machine "scaled-out" deployment for end-to-end tests: `histoquery` CLI subprocesses and Celery workers.

The Redis and PostgreSQL servers come from the ``redis_url`` / ``postgres_url`` fixtures (throwaway servers);
this module runs the real console script against them with ``HISTOQUERY_*`` environment variables, exactly as a
user (or docker compose) would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def histoquery_argv(*args: str) -> list[str]:
    """argv that runs the ``histoquery`` console script of this checkout (``python -m cli.main``)."""
    return [sys.executable, "-m", "cli.main", *args]


@dataclass
class Deployment:
    """Settings of a deployment (environment) plus the processes started for it."""

    home: Path
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def full_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("HISTOQUERY_")}
        return {**keep, "PYTHONPATH": str(ROOT), **self.env, **(extra or {})}

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``histoquery ARGS`` to completion; on failure the assertion shows its output and worker logs."""
        proc = subprocess.run(
            histoquery_argv(*args), cwd=ROOT, env=self.full_env(), capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"`histoquery {' '.join(args)}` exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
                f"--- stderr\n{proc.stderr[-4000:]}\n{self.worker_logs()}"
            )
        return proc

    def start_worker(self, *args: str, name: str | None = None) -> subprocess.Popen[bytes]:
        """Start ``histoquery worker ARGS`` in its own process group, logging to ``home/<name>.log``."""
        name = name or f"worker{len(self.workers) + 1}"
        log = self.home / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                histoquery_argv("worker", *args),
                cwd=ROOT,
                env=self.full_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.workers.append(proc)
        self.logs.append(log)
        return proc

    def wait_workers_ready(self, timeout: float = 120) -> None:
        """Wait until every started worker logs Celery's 'ready' line (or fail with the logs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p for p in self.workers if p.poll() is not None]
            if dead:
                raise AssertionError(f"worker exited with {dead[0].returncode}\n{self.worker_logs()}")
            if all("ready" in log.read_text(errors="replace") for log in self.logs):
                return
            time.sleep(0.5)
        raise AssertionError(f"workers not ready after {timeout}s\n{self.worker_logs()}")

    def worker_logs(self, tail: int = 3000) -> str:
        parts = []
        for log in self.logs:
            text = log.read_text(errors="replace") if log.exists() else ""
            parts.append(f"--- {log.name}\n{text[-tail:]}")
        return "\n".join(parts)

    def stop_workers(self, timeout: float = 30) -> None:
        """Warm shutdown (SIGTERM) of every worker's process group, SIGKILL after ``timeout``."""
        for proc in self.workers:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.workers.clear()


def server_env(home: Path, database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    """``HISTOQUERY_*`` variables of a PostgreSQL + Redis deployment (vectors: the embedded store under home).

    No Qdrant server can run here, so the vector store stays embedded; every process on this machine shares it.
    """
    result_backend = broker_url.rsplit("/", 1)[0] + "/1"
    env = {
        "HISTOQUERY_HOME": str(home),
        "HISTOQUERY_DATABASE_URL": database_url,
        "HISTOQUERY_BROKER_URL": broker_url,
        "HISTOQUERY_RESULT_BACKEND": result_backend,
        "HISTOQUERY_DEVICE": "cpu",
        "HISTOQUERY_ALLOWED_ROOTS": f'["{ROOT / "samples"}", "{home}"]',
    }
    env.update({f"HISTOQUERY_{k.upper()}": v for k, v in extra.items()})
    return env


@contextlib.contextmanager
def deployment(home: Path, env: Mapping[str, str], workers: Sequence[Sequence[str]] = ()) -> Iterator[Deployment]:
    """A deployment with ``len(workers)`` worker processes (each given its argv), stopped on exit."""
    home.mkdir(parents=True, exist_ok=True)
    dep = Deployment(home=home, env=dict(env))
    try:
        for args in workers:
            dep.start_worker(*args)
        if workers:
            dep.wait_workers_ready()
        yield dep
    finally:
        dep.stop_workers()


def fresh_database(postgres: object, name: str) -> str:
    """A new empty database on the session's PostgreSQL (the ``postgres`` fixture: a server or a URL)."""
    from tests.support.services import PostgresServer

    if isinstance(postgres, PostgresServer):
        return postgres.create_database(name)
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(str(postgres))
    with psycopg.connect(
        host=base.host, port=base.port, user=base.username, password=base.password, dbname=base.database,
        autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(hide_password=False)
