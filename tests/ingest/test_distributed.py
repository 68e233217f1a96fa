"""Distributed mode: real Redis broker, real `histoquery worker` subprocesses, real PostgreSQL, embedded Qdrant.

One cluster per module (starting workers costs seconds); each test uses its own dataset and input files.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ingest.service import job_status, submit_ingest, wait_for_job
from retrieval.settings import Settings, get_settings
from tests.ingest.conftest import register_active
from tests.support.ingest_checks import stored
from tests.support.ingest_cluster import (
    ROOT,
    PersistentRedis,
    Worker,
    database_outage,
    histoquery_cmd,
    histoquery_env,
)
from tests.support.ingest_inputs import he_image, make_bad_inputs
from tests.support.services import PostgresServer

pytestmark = pytest.mark.slow

VISIBILITY_S = 12  # > the longest batch here (a few seconds); a killed worker's batch is re-delivered after this


@dataclass
class Cluster:
    settings: Settings
    env: dict[str, str]
    redis: PersistentRedis
    admin_url: str
    database: str
    workers: list[Worker]
    logs: Path

    def start_worker(self) -> Worker:
        w = Worker(self.env, self.logs / f"worker{len(self.workers)}.log").start()
        self.workers.append(w)
        w.wait_ready()
        return w


@pytest.fixture(scope="module")
def cluster(
    postgres: PostgresServer | str, tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path
) -> Iterator[Cluster]:
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    name = f"hq_ingest_{uuid.uuid4().hex[:8]}"
    if isinstance(postgres, str):
        base = make_url(postgres)
        admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        db_url = base.set(database=name).render_as_string(hide_password=False)
    else:
        db_url = postgres.create_database(name)
        admin = f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres"
    home = tmp_path_factory.mktemp("cluster")
    redis = PersistentRedis()
    redis.start()
    env_settings = {
        "HISTOQUERY_HOME": str(home / "home"),
        "HISTOQUERY_DATABASE_URL": db_url,
        "HISTOQUERY_BROKER_URL": redis.url,
        "HISTOQUERY_TASK_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
        "HISTOQUERY_INGEST_BATCH_SIZE": "8",
        "HISTOQUERY_DEVICE": "cpu",
    }
    settings = get_settings(
        home=home / "home", database_url=db_url, broker_url=redis.url, task_visibility_timeout_s=VISIBILITY_S,
        ingest_batch_size=8, device="cpu",
    )  # fmt: skip
    register_active(settings, tiny_checkpoint)
    env = histoquery_env(env_settings)
    c = Cluster(settings, env, redis, admin, name, [], home)
    try:
        c.start_worker()
        c.start_worker()
        yield c
    finally:
        for w in c.workers:
            w.terminate()
        for w in c.workers:
            w.stop()
        redis.stop()


def _make_images(folder: Path, n: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = he_image(72, i).rotate(90 * (i % 4))
        image.putpixel((0, 0), (seed, i % 256, 7))  # unique content per (seed, i): no hash shared across tests
        image.save(folder / f"img_{seed}_{i:03d}.png")
    return folder


def _alive(cluster: Cluster) -> list[Worker]:
    return [w for w in cluster.workers if w.proc is not None and w.proc.poll() is None]


def test_e2e_sample_and_slide_two_workers_then_idempotent(
    cluster: Cluster, sample_dir: Path, sample_slide: Path, tmp_path: Path
) -> None:
    bad = make_bad_inputs(tmp_path / "bad")
    cmd = histoquery_cmd("-q", "ingest", str(sample_dir), str(sample_slide), str(tmp_path / "bad"),
                         "--dataset", "e2e", "--labels-from-folders", "--wait")  # fmt: skip
    points_before = stored(cluster.settings).points
    first = subprocess.run(cmd, cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 1, first.stdout + first.stderr  # bad files -> non-zero exit
    for path in bad.values():
        assert f"{path}:" in first.stderr
    s = stored(cluster.settings, "e2e")
    tiles = s.images - 64
    assert tiles > 10
    assert s.images == s.done == s.embeddings == s.distinct_hashes
    assert s.points - points_before == s.images  # SQL rows = Qdrant points = valid inputs
    assert s.drift_free
    assert "stored" in first.stdout and f"{len(bad)} failed" in first.stdout
    # both workers took part
    assert all("succeeded" in w.log() for w in cluster.workers[:2]), [w.log()[-2000:] for w in cluster.workers]
    # idempotency: the same command again writes nothing new
    second = subprocess.run(cmd, cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 1
    assert f"0 stored, {s.images} skipped" in second.stdout
    again = stored(cluster.settings, "e2e")
    assert (again.images, again.embeddings, again.points) == (s.images, s.embeddings, s.points)


def test_embedded_mode_matches_distributed(cluster: Cluster, sample_dir: Path, sample_slide: Path,
                                          tmp_path: Path, tiny_checkpoint: Path) -> None:  # fmt: skip
    local = get_settings(home=tmp_path / "local", broker_url=None, ingest_batch_size=16, device="cpu")
    register_active(local, tiny_checkpoint)
    submit_ingest([sample_dir, sample_slide], settings=local, dataset="e2e", labels_from_folders=True)
    embedded = stored(local, "e2e", with_vectors=True)
    if stored(cluster.settings, "e2e").images == 0:  # run alone (-k): ingest on the workers first
        job = submit_ingest([sample_dir, sample_slide], settings=cluster.settings, dataset="e2e",
                            labels_from_folders=True)  # fmt: skip
        wait_for_job(job, settings=cluster.settings, timeout_s=300)
    distributed = stored(cluster.settings, "e2e", with_vectors=True)
    assert embedded.rows == distributed.rows  # same content hashes, paths and labels
    assert set(embedded.vectors) == set(distributed.vectors) and len(embedded.vectors) == embedded.images
    for h, v in embedded.vectors.items():
        np.testing.assert_allclose(v, distributed.vectors[h], atol=1e-4)


def test_reembed_on_workers_switches_when_complete(cluster: Cluster, tmp_path: Path) -> None:
    from ingest.service import submit_reembed
    from training.testing import make_untrained_checkpoint

    if stored(cluster.settings).images == 0:  # run alone (-k): store something to re-embed first
        job = submit_ingest([_make_images(tmp_path / "re", 16, seed=4)], settings=cluster.settings, dataset="re")
        wait_for_job(job, settings=cluster.settings, timeout_s=300)
    before = stored(cluster.settings)
    ckpt = make_untrained_checkpoint(tmp_path / "v2.pt", seed=3)
    job_id = submit_reembed(settings=cluster.settings, checkpoint=ckpt, name="v2")
    status = wait_for_job(job_id, settings=cluster.settings, timeout_s=300)
    assert (status.status, status.failed, status.done) == ("done", 0, before.images), status
    after = stored(cluster.settings)  # the active version is v2 now
    assert after.embeddings == after.images == before.images
    assert after.points == before.points and after.drift_free


def test_sigkill_worker_mid_job(cluster: Cluster, tmp_path: Path) -> None:
    data = _make_images(tmp_path / "kill", 96, seed=1)
    job_id = submit_ingest([data], settings=cluster.settings, dataset="kill")
    deadline = time.monotonic() + 120
    while job_status(job_id, settings=cluster.settings).batches_done < 1:
        assert time.monotonic() < deadline, "no batch finished"
        time.sleep(0.1)
    victim = _alive(cluster)[0]
    victim.kill()  # SIGKILL: its batch in flight is neither recorded nor acknowledged
    cluster.start_worker()
    status = wait_for_job(job_id, settings=cluster.settings, timeout_s=240)
    assert (status.status, status.done, status.failed) == ("done", 96, 0), status
    s = stored(cluster.settings, "kill")
    assert s.images == s.done == s.embeddings == s.distinct_hashes == 96
    assert s.drift_free  # `histoquery doctor` finds SQL and Qdrant consistent


def test_redis_and_database_outages_mid_job(cluster: Cluster, tmp_path: Path) -> None:
    data = _make_images(tmp_path / "outage", 96, seed=2)
    points_before = stored(cluster.settings).points
    job_id = submit_ingest([data], settings=cluster.settings, dataset="outage")
    cluster.redis.stop()  # broker down with batches queued (persisted in its append-only file)
    time.sleep(3)
    cluster.redis.start()
    with database_outage(cluster.admin_url, cluster.database):
        time.sleep(3)
    status = wait_for_job(job_id, settings=cluster.settings, timeout_s=300)
    assert (status.status, status.done, status.failed) == ("done", 96, 0), status
    s = stored(cluster.settings, "outage")
    assert s.images == s.done == s.embeddings == 96
    assert s.drift_free
    assert stored(cluster.settings).points - points_before == 96
