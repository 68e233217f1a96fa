"""``histoquery reembed``: embed every stored image with another encoder version, then switch to it.

The vectors go into the new version's own collection; the active alias moves to it only when every image is
stored, so queries keep using the old version until then. ``--checkpoint`` registers a checkpoint first (on an
empty database this just registers and activates it).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("reembed", help="re-embed all images with an encoder version", description=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--encoder", default=None, metavar="VERSION", help="a registered encoder version name")
    src.add_argument("--checkpoint", type=Path, default=None, help="register this checkpoint and use it")
    p.add_argument("--name", default=None, help="with --checkpoint: the version name")
    p.add_argument("--activate", dest="activate", action="store_true", default=True,
                   help="switch the active encoder when complete (default)")  # fmt: skip
    p.add_argument("--no-activate", dest="activate", action="store_false", help="only fill the new collection")
    p.add_argument("--wait", action="store_true", help="with a broker: follow the job until it finishes")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cli.ingest import ProgressBar, report
    from ingest.service import job_status, submit_reembed, wait_for_job
    from retrieval.settings import get_settings

    settings = get_settings()
    bar = ProgressBar("reembed")
    try:
        job_id = submit_reembed(
            settings=settings,
            encoder=args.encoder,
            checkpoint=args.checkpoint,
            name=args.name,
            activate=args.activate,
            progress=bar,
        )
        if settings.broker_url and not args.wait:
            status = job_status(job_id, settings=settings)
            print(f"job {job_id} queued: {status.total} images (follow it with `histoquery jobs {job_id}`)")
            return 0
        status = wait_for_job(job_id, settings=settings, progress=bar)
    finally:
        bar.close()
    code = report(status)
    if status.status == "done" and args.activate:
        print(f"active encoder: {status.encoder_version}")
    return code
