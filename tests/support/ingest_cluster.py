"""A small ingest cluster for tests: a persistent Redis, `histoquery worker` subprocesses, outage helpers.

The Redis here keeps an append-only file (as a production broker must), so stopping and restarting it on the
same port loses no queued batch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.services import RedisServer, _find_binary, wait_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class PersistentRedis(RedisServer):
    """redis-server with ``appendonly yes`` + ``appendfsync always``: survives stop() / start()."""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [_find_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.port)


def histoquery_env(settings_env: Mapping[str, str]) -> dict[str, str]:
    """The environment for a `histoquery` subprocess: ours plus the given HISTOQUERY_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HISTOQUERY_")}
    env.update(settings_env)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def histoquery_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


@dataclass
class Worker:
    """One `histoquery worker` subprocess (its own process group), log in ``log_path``."""

    env: dict[str, str]
    log_path: Path
    concurrency: int = 1
    proc: subprocess.Popen[bytes] | None = field(default=None)

    def start(self) -> Worker:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            histoquery_cmd("worker", "--concurrency", str(self.concurrency), "--loglevel", "INFO"),
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until the worker logs that it is ready to consume."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            if " ready." in self.log():
                return
            time.sleep(0.3)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (no clean shutdown, no acks)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def terminate(self) -> None:
        """Ask for a warm shutdown (SIGTERM) without waiting."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()


@contextlib.contextmanager
def workers(env: dict[str, str], log_dir: Path, count: int = 2, concurrency: int = 1) -> Iterator[list[Worker]]:
    """Start ``count`` workers, wait until they are ready, stop them afterwards."""
    started = [Worker(env, log_dir / f"worker{i}.log", concurrency).start() for i in range(count)]
    try:
        for w in started:
            w.wait_ready()
        yield started
    finally:
        for w in started:
            w.stop()


@contextlib.contextmanager
def database_outage(admin_url: str, database: str) -> Iterator[None]:
    """Make one PostgreSQL database refuse connections (and drop the open ones) for the duration of the block."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )
    try:
        yield
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
