"""``histoquery dashboard``: run the Streamlit dashboard (search, pairs, clusters, accuracy, ingestion, models).

  histoquery dashboard [--port 8501] [--host 127.0.0.1] [--headless]

It runs ``streamlit run dashboard/app.py`` with the same HISTOQUERY_* settings (environment / .env). On the embedded
default the vector store is opened by one process at a time: stop other HistoQuery commands first, or use the
scaled-out deployment (Qdrant server) for concurrent use.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("dashboard", help="run the Streamlit dashboard", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--headless", action="store_true", help="do not open a browser window")
    p.set_defaults(handler=run)


def streamlit_command(port: int, host: str, headless: bool, max_upload_mb: int | None = None) -> list[str]:
    """The ``streamlit run`` command line for the dashboard app.

    Streamlit's own upload cap (``server.maxUploadSize``) is set to the app's limit (``HISTOQUERY_MAX_UPLOAD_MB``,
    default from the settings), the number every uploader shows and checks; the toolbar is the viewer's (no
    "Deploy" button).
    """
    import dashboard

    if max_upload_mb is None:
        from retrieval.settings import get_settings

        max_upload_mb = get_settings().max_upload_mb
    app = Path(dashboard.__file__).resolve().parent / "app.py"
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.port", str(port), "--server.address", host,
        "--server.headless", "true" if headless else "false",
        "--server.maxUploadSize", str(max_upload_mb),
        "--client.toolbarMode", "viewer",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from cli.errors import CLIError

    if not 1 <= args.port <= 65535:
        raise CLIError(f"--port {args.port} is not a TCP port: use 1-65535")
    cmd = streamlit_command(args.port, args.host, args.headless)
    print(f"HistoQuery dashboard on http://{args.host}:{args.port}  (Ctrl+C to stop)", file=sys.stderr)
    try:
        return subprocess.call(cmd, env=dict(os.environ))
    except KeyboardInterrupt:
        return 130
