"""``histoquery jobs``: list ingestion / re-embedding jobs, or show one job with its failures."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("jobs", help="list ingestion jobs and their state", description=__doc__)
    p.add_argument("job", nargs="?", type=int, default=None, help="show this job (with its failures)")
    p.add_argument("--limit", type=int, default=20, help="jobs to list (newest first)")
    p.add_argument("--failures", action="store_true", help="with JOB: list every failure")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--resume", type=int, metavar="JOB", help="resume an interrupted job: store the missing images")
    act.add_argument("--cancel", type=int, metavar="JOB", help="cancel a queued, running or interrupted job")
    p.set_defaults(handler=run)


def _fmt_time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _resume(job_id: int, settings: Any) -> int:
    from cli.ingest import ProgressBar, report
    from ingest.service import resume_job, wait_for_job

    bar = ProgressBar("resume")
    try:
        count = resume_job(job_id, settings=settings, progress=bar)
        if settings.broker_url:
            print(f"job {job_id}: {count} missing batch(es) queued again (follow it with `histoquery jobs {job_id}`)")
            return 0
        status = wait_for_job(job_id, settings=settings, progress=bar)
    finally:
        bar.close()
    return report(status)


def run(args: argparse.Namespace) -> int:
    from cli.tables import printable
    from ingest.service import job_status, list_jobs
    from retrieval.settings import get_settings

    settings = get_settings()
    if args.cancel is not None:
        from ingest.service import cancel

        cancel(args.cancel, settings=settings)
        print(f"job {args.cancel} cancelled")
        return 0
    if args.resume is not None:
        return _resume(args.resume, settings)
    if args.job is not None:
        status = job_status(args.job, settings=settings, max_failures=1_000_000 if args.failures else 20)
        print(f"job {status.id} ({status.kind}) {status.status}")
        print(f"  dataset {status.dataset or '-'}, encoder {status.encoder_version or '-'}")
        print(f"  {status.done} done, {status.failed} failed, {status.skipped} skipped of {status.total}; "
              f"batches {status.batches_done}/{status.batches}")  # fmt: skip
        print(f"  created {_fmt_time(status.created_at)}, started {_fmt_time(status.started_at)}, "
              f"finished {_fmt_time(status.finished_at)}")  # fmt: skip
        if status.error:
            print(f"  error: {printable(status.error)}")
        for f in status.failures:
            print(f"  FAILED [{f.stage}] {printable(f.source)}: {printable(f.reason)}")
        if not args.failures and status.failed > len(status.failures):
            print(f"  ... {status.failed - len(status.failures)} more (--failures)")
        return 0
    jobs = list_jobs(settings=settings, limit=args.limit)
    if not jobs:
        print("no jobs yet: start one with `histoquery ingest PATH`")
        return 0
    print(f"{'id':>5} {'kind':8} {'status':8} {'done':>7} {'failed':>7} {'skipped':>7} {'total':>7}  "
          f"{'dataset':16} created")  # fmt: skip
    for j in jobs:
        print(f"{j.id:>5} {j.kind:8} {j.status:8} {j.done:>7} {j.failed:>7} {j.skipped:>7} {j.total:>7}  "
              f"{printable(j.dataset or '-')[:16]:16} {_fmt_time(j.created_at)}")  # fmt: skip
    return 0
