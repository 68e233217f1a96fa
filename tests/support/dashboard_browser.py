"""Real-browser harness for the dashboard: ``streamlit run`` on a free port + headless Chromium over CDP.

No extra dependency: the Chrome DevTools Protocol is spoken over the ``websockets`` package (already a Streamlit
dependency). Chromium is the Debian ``chromium`` package (``/usr/bin/chromium``).

Usage::

    with streamlit_server(env={"HISTOQUERY_HOME": str(home)}) as url, chromium() as browser:
        page = browser.new_page()
        page.navigate(url + "/search")
        page.wait_for_text("Search")
        page.screenshot(tmp_path / "search.png")
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "app.py"

# Rendered-DOM markers of a failure: an uncaught exception box, or an st.error alert.
EXCEPTION_SELECTOR = '[data-testid="stException"]'
ERROR_SELECTOR = '[data-testid="stAlertContentError"]'


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it is still there after ``grace_s``."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def chromium_binary() -> str | None:
    """Path of a Chromium / Chrome binary, or None when none is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


# ----------------------------------------------------------------------------------------------- streamlit server
@contextlib.contextmanager
def streamlit_server(
    env: Mapping[str, str] | None = None, app: Path = APP, timeout: float = 90.0, log_path: Path | None = None
) -> Iterator[str]:
    """Run ``streamlit run <app>`` headless on a free localhost port; yields the base URL.

    Args:
        env: extra environment variables (e.g. ``HISTOQUERY_HOME``) for the app process.
        app: the Streamlit entry point.
        timeout: seconds to wait for ``/_stcore/health``.
        log_path: where the server's stdout/stderr go (a temp file by default); shown when start-up fails.
    """
    port = free_port()
    log = log_path or Path(tempfile.mkdtemp(prefix="hq-st-")) / "streamlit.log"
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
        "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
        "--server.enableXsrfProtection", "false",
    ]  # fmt: skip
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp:
                if resp.read().strip() == b"ok":
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit not healthy after {timeout}s:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)
        yield url
    finally:
        stop_process_group(proc, grace_s=15)


# ----------------------------------------------------------------------------------------------- CDP
class CDPError(RuntimeError):
    """A DevTools command failed or the page did not reach the expected state in time."""


class Page:
    """One browser tab driven over a flattened CDP session."""

    def __init__(self, browser: Browser, session_id: str, target_id: str = "") -> None:
        self._browser = browser
        self.session_id = session_id
        self.target_id = target_id

    def close(self) -> None:
        """Close the tab (its Streamlit session ends)."""
        self._browser.send("Target.closeTarget", {"targetId": self.target_id})

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        return self._browser.send(method, params, session_id=self.session_id, timeout=timeout)

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        """Evaluate JS in the page and return its (JSON) value."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CDPError(f"JS error in {expression[:80]!r}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def body_text(self) -> str:
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def count(self, selector: str) -> int:
        return int(self.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length") or 0)

    def script_state(self) -> str | None:
        """Streamlit's script state from the DOM (``initial``, ``running``, ``notRunning`` ...)."""
        state = self.evaluate(
            "(() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
            " return a ? a.getAttribute('data-test-script-state') : null; })()"
        )
        return None if state is None else str(state)

    def is_running(self) -> bool:
        """True until the app's script run has finished (no run yet counts as running)."""
        return self.script_state() != "notRunning"

    def main_title(self) -> str:
        """Text of the first <h1> in the main area (the page title)."""
        return str(
            self.evaluate(
                "(() => { const h = document.querySelector('[data-testid=\"stMain\"] h1');"
                " return h ? h.innerText : ''; })()"
            )
            or ""
        )

    def wait_rendered(self, title: str, *texts: str, timeout: float = 90.0) -> str:
        """Wait until the page titled ``title`` has finished its script run and shows ``texts``; returns the text."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.main_title().strip() == title and not self.is_running():
                return self.wait_for_text(*texts, timeout=max(1.0, deadline - time.monotonic()))
            time.sleep(0.1)
        raise CDPError(
            f"page {title!r} did not finish rendering within {timeout}s (title {self.main_title()!r}, "
            f"state {self.script_state()!r}); page text:\n{self.body_text()[:3000]}"
        )

    def wait_for_text(self, *texts: str, timeout: float = 60.0) -> str:
        """Wait until every text is in the rendered page and no script run is in progress; returns the text."""
        deadline = time.monotonic() + timeout
        body = ""
        stable_since: float | None = None
        while time.monotonic() < deadline:
            body = self.body_text()
            if all(t in body for t in texts) and not self.is_running():
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since > 0.3:  # settled
                    return self.body_text()
            else:
                stable_since = None
            time.sleep(0.1)
        missing = [t for t in texts if t not in body]
        raise CDPError(f"page did not render {missing} within {timeout}s; page text:\n{body[:3000]}")

    def wait_for(self, js_condition: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(f"Boolean({js_condition})"):
                return
            time.sleep(0.2)
        raise CDPError(f"condition {js_condition!r} not met within {timeout}s; page text:\n{self.body_text()[:3000]}")

    def images_loaded(self) -> bool:
        """True when every <img> in the page has loaded (Streamlit serves images asynchronously)."""
        return bool(self.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"))

    def broken_images(self) -> list[str]:
        """Sources of <img> elements that finished loading without pixels."""
        js = "Array.from(document.images).filter(i => i.complete && i.naturalWidth === 0).map(i => i.src)"
        return list(self.evaluate(js) or [])

    def charts_drawn(self) -> bool:
        """True when every Plotly chart on the page has drawn its SVG."""
        return bool(
            self.evaluate(
                "Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"]'))"
                ".every(c => c.querySelector('.main-svg'))"
            )
        )

    def wait_media(self, timeout: float = 30.0) -> None:
        """Wait until images have loaded and Plotly charts have drawn (both arrive after the script run)."""
        self.wait_for(
            "Array.from(document.images).every(i => i.complete) && "
            "Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"]'))"
            ".every(c => c.querySelector('.main-svg'))",
            timeout=timeout,
        )

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """Save a PNG screenshot (the whole scrollable main area when ``full_page``) once images have loaded."""
        with contextlib.suppress(CDPError):
            self.wait_media(timeout=20)
        height = 900
        if full_page:  # Streamlit scrolls inside its main container, not the document
            height = int(
                self.evaluate(
                    'Math.max(...Array.from(document.querySelectorAll(\'[data-testid="stMain"], '
                    '[data-testid="stMainBlockContainer"]\')).map(e => e.scrollHeight), 900)'
                )
                or 900
            )
            height = min(height + 40, 5000)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1400, "height": height, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
        time.sleep(0.5)
        with contextlib.suppress(CDPError):
            self.wait_for("Array.from(document.images).every(i => i.complete)", timeout=20)
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def set_file_input(self, files: list[Path], selector: str = 'input[type="file"]') -> None:
        """Put files into a file <input> (what a user picking files in the dialog does)."""
        doc = self.send("DOM.getDocument", {"depth": -1, "pierce": True})
        node = self.send("DOM.querySelector", {"nodeId": doc["root"]["nodeId"], "selector": selector})
        if not node.get("nodeId"):
            raise CDPError(f"no element matches {selector!r}")
        self.send("DOM.setFileInputFiles", {"files": [str(f) for f in files], "nodeId": node["nodeId"]})

    def click_button(self, label: str) -> None:
        """Click the first <button> whose text is exactly ``label``."""
        found = self.evaluate(
            "(() => { const b = Array.from(document.querySelectorAll('button'))"
            f".find(e => e.innerText.trim() === {json.dumps(label)});"
            " if (!b) return false; b.click(); return true; })()"
        )
        if not found:
            raise CDPError(f"no button labelled {label!r}")

    def click_text(self, selector: str, text: str, timeout: float = 30.0) -> None:
        """Click (real mouse events) the first element matching ``selector`` whose text is ``text`` (waits for it)."""
        js = (
            f"(() => {{ const e = Array.from(document.querySelectorAll({json.dumps(selector)}))"
            f".find(e => (e.innerText || e.textContent || '').trim() === {json.dumps(text)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " if (r.width === 0 || r.height === 0) return null;"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        deadline = time.monotonic() + timeout
        box = self.evaluate(js)
        while not box and time.monotonic() < deadline:
            time.sleep(0.2)
            box = self.evaluate(js)
        if not box:
            found = self.evaluate(
                f"Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => e.textContent.trim())"
            )
            raise CDPError(f"no {selector} with text {text!r} within {timeout}s (found {found})")
        time.sleep(0.2)  # let the scroll settle
        box = self.evaluate(js) or box
        x, y = float(box[0]), float(box[1])
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def click_plot_point(self, trace: int = 0, index: int = 0) -> Any:
        """Click (real mouse events) point ``index`` of ``trace`` in the first Plotly chart; returns its customdata."""
        self.wait_for(
            "document.querySelector('.js-plotly-plot') && document.querySelector('.js-plotly-plot')._fullLayout"
        )
        time.sleep(0.5)  # let the chart finish its first layout
        found = self.evaluate(
            "(() => { const gd = document.querySelector('.js-plotly-plot'); gd.scrollIntoView({block: 'center'});"
            " const fl = gd._fullLayout; const tr = gd._fullData[" + str(trace) + "]; const i = " + str(index) + ";"
            " const r = gd.getBoundingClientRect();"
            " return [r.left + fl.xaxis._offset + fl.xaxis.l2p(tr.x[i]),"
            " r.top + fl.yaxis._offset + fl.yaxis.l2p(tr.y[i]),"
            " tr.customdata ? tr.customdata[i] : null]; })()"
        )
        x, y = float(found[0]), float(found[1])
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        time.sleep(0.3)  # plotly picks the hovered point
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})
        return found[2]

    def error_texts(self) -> list[str]:
        """Texts of exception boxes and st.error alerts on the page."""
        sel = json.dumps(f"{EXCEPTION_SELECTOR}, {ERROR_SELECTOR}")
        return list(self.evaluate(f"Array.from(document.querySelectorAll({sel})).map(e => e.innerText)") or [])


class Browser:
    """A headless Chromium process and one websocket to its DevTools endpoint."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._next_id = 0

    def send(
        self, method: str, params: dict[str, Any] | None = None, session_id: str | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session_id:
            msg["sessionId"] = session_id
        self._ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CDPError(f"no answer to {method} within {timeout}s")
            reply = json.loads(self._ws.recv(timeout=remaining))
            if reply.get("id") == self._next_id:  # events (no id) are ignored
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def new_page(self, width: int = 1400, height: int = 900) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session, target)
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
        return page


@contextlib.contextmanager
def chromium(timeout: float = 30.0) -> Iterator[Browser]:
    """Start headless Chromium with remote debugging on a free port; yields a :class:`Browser`."""
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("chromium not installed (Debian: apt-get install chromium)")
    profile = Path(tempfile.mkdtemp(prefix="hq-chromium-"))
    cmd = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", "--remote-debugging-port=0",
        "about:blank",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise CDPError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=timeout) as ws:
            yield Browser(ws)
    finally:
        stop_process_group(proc, grace_s=10)
        shutil.rmtree(profile, ignore_errors=True)


def open_upload(page: Page, url: str, title: str, *texts: str) -> None:
    """Open a page (``url``: the server plus the page's path), wait for it, switch its query picker to Upload and wait
    for the file input (Search and Pair share this picker)."""
    page.navigate(url)
    page.wait_rendered(title, *texts, timeout=180)
    page.click_text("[data-testid='stMain'] [data-testid='stRadioOption']", "Upload")
    page.wait_for("document.querySelector(\"[data-testid='stMain'] input[type=file]\")", timeout=60)
