"""``histoquery ingest``: ingest folders, files, whole slides or a manifest as one job.

With a broker (HISTOQUERY_BROKER_URL) the job's batches go to `histoquery worker` processes and --wait follows
them with a live progress bar; without one the batches run in this process with the same bar. The exit code
is 1 when any input failed (the failures are listed with their reasons), 0 when everything was stored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("ingest", help="ingest images, slides or a manifest (one job)", description=__doc__)
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="folders (recursive), image files, slides")
    p.add_argument("--dataset", default="default", help="dataset name (created if needed; default 'default')")
    p.add_argument("--labels-from-folders", action="store_true", help="label each image with its folder's name")
    p.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="CSV with path,label,slide,dataset,group[,extra columns]; group/patient/case/slide = group",
    )
    p.add_argument(
        "--groups",
        type=Path,
        default=None,
        metavar="CSV",
        help="CSV path,group: each file's group (patient/case/slide; never split or paired within)",
    )
    p.add_argument("--group-from", default=None, metavar="REGEX",
                   help="group = first capture group of REGEX on the file name, e.g. '^(TCGA-..-....)'")  # fmt: skip
    p.add_argument("--wait", action="store_true", help="with a broker: follow the job until it finishes")
    g = p.add_argument_group("slides")
    g.add_argument("--tile-size", type=int, default=224, help="tile side in pixels at the target resolution")
    g.add_argument("--target-mpp", type=float, default=None, help="tile resolution in microns/pixel (default native)")
    g.add_argument("--magnification", type=float, default=None, help="tile resolution as magnification (e.g. 20)")
    g.add_argument("--mpp", type=float, default=None, help="level-0 microns/pixel when the slide metadata lacks it")
    g.add_argument("--default-mpp", type=float, default=0.5, help="assumed level-0 mpp when unknown (warned)")
    g.add_argument("--overlap", type=int, default=0, help="tile overlap in pixels")
    g.add_argument("--min-tissue", type=float, default=0.5, help="minimum tissue fraction per tile (0-1)")
    p.set_defaults(handler=run)


class ProgressBar:
    """A tqdm bar over a job: done / failed / skipped, items/s and ETA (tqdm computes rate and ETA)."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar: Any = None

    def __call__(self, status: Any) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=status.total, desc=self.desc, unit="img", dynamic_ncols=True, file=sys.stderr)
        self.bar.total = status.total
        self.bar.n = status.processed
        self.bar.set_postfix(done=status.done, failed=status.failed, skipped=status.skipped, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def report(status: Any, max_failures: int = 20) -> int:
    """Print a job's summary and failures; the exit code (1 when anything failed)."""
    print(
        f"job {status.id} {status.status}: {status.done} stored, {status.skipped} skipped (already stored), "
        f"{status.failed} failed, of {status.total}"
    )
    from cli.tables import printable

    if status.error:
        print(f"error: {printable(status.error)}", file=sys.stderr)
    for f in status.failures[:max_failures]:
        print(f"  FAILED [{f.stage}] {printable(f.source)}: {printable(f.reason)}", file=sys.stderr)
    if status.failed > max_failures:
        print(f"  ... {status.failed - max_failures} more: `histoquery jobs {status.id} --failures`", file=sys.stderr)
    return 1 if status.failed or status.status != "done" else 0


def run(args: argparse.Namespace) -> int:
    from ingest.planning import TilingOptions
    from ingest.service import job_status, submit_ingest, wait_for_job
    from retrieval.settings import get_settings

    settings = get_settings()
    tiling = TilingOptions(
        tile_size=args.tile_size,
        target_mpp=args.target_mpp,
        magnification=args.magnification,
        mpp=args.mpp,
        default_mpp=args.default_mpp,
        overlap=args.overlap,
        min_tissue=args.min_tissue,
    )
    bar = ProgressBar("ingest")
    try:
        job_id = submit_ingest(
            args.paths,
            settings=settings,
            dataset=args.dataset,
            labels_from_folders=args.labels_from_folders,
            manifest=args.manifest,
            tiling=tiling,
            progress=bar,
            groups_csv=args.groups,
            group_from=args.group_from,
        )
        if settings.broker_url and not args.wait:
            status = job_status(job_id, settings=settings)
            print(f"job {job_id} queued: {status.total} items in {status.batches} batches "
                  f"(follow it with `histoquery jobs {job_id}`)")  # fmt: skip
            return 0
        status = wait_for_job(job_id, settings=settings, progress=bar)
    finally:
        bar.close()
    return report(status)
