"""``histoquery dashboard`` starts Streamlit on the given port with the dashboard app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cli.dashboard import streamlit_command
from cli.main import main
from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_command_line_runs_the_app_on_the_port() -> None:
    cmd = streamlit_command(8765, "0.0.0.0", headless=True)
    assert cmd[1:4] == ["-m", "streamlit", "run"]
    assert Path(cmd[4]) == ROOT / "dashboard" / "app.py"
    assert cmd[cmd.index("--server.port") + 1] == "8765"
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"


def test_bad_port_is_a_one_line_error(capsys) -> None:  # noqa: ANN001
    assert main(["dashboard", "--port", "70000"]) == 2
    assert "is not a TCP port" in capsys.readouterr().err


def test_histoquery_dashboard_serves_the_app(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "HISTOQUERY_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "dashboard", "--port", str(port), "--headless"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        health = b""
        while time.monotonic() < deadline and health != b"ok":
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                    health = resp.read().strip()
            except OSError:
                time.sleep(0.3)
        assert health == b"ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert resp.status == 200 and b'<div id="root">' in resp.read()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
