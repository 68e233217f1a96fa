"""``histoquery worker``: a Celery worker that runs ingestion batches from the Redis broker.

Start one per machine (or one per GPU with --gpu); several workers on one or more machines share a job. Needs
HISTOQUERY_BROKER_URL and the same database / vector store settings as the submitting side.
"""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("worker", help="run an ingestion worker (Celery, Redis broker)", description=__doc__)
    p.add_argument("--concurrency", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--gpu", action="store_true", help="embed on CUDA (fails when no GPU is visible)")
    p.add_argument("--name", default=None, help="worker node name (default hq-<host>-<pid>)")
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cli.errors import CLIError
    from retrieval.settings import get_settings

    settings = get_settings()
    if not settings.broker_url:
        raise CLIError(
            "no broker configured: set HISTOQUERY_BROKER_URL=redis://host:6379/0 (without a broker, "
            "`histoquery ingest` runs the work itself and no worker is needed)"
        )
    if args.concurrency < 1:
        raise CLIError("--concurrency must be >= 1")
    device = None
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            raise CLIError("--gpu given but no CUDA device is visible to this process")
        device = "cuda"
    from ingest.celery_app import QUEUE, create_app

    app = create_app(settings)
    app.histoquery_device = device  # type: ignore[attr-defined]
    name = args.name or f"hq-{socket.gethostname()}-{os.getpid()}"
    argv = [
        "worker",
        f"--loglevel={args.loglevel}",
        f"--concurrency={args.concurrency}",
        "--pool=solo" if args.concurrency == 1 else "--pool=prefork",
        "-Q",
        QUEUE,
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    app.worker_main(argv)
    return 0
