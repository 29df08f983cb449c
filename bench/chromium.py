"""Headless Chromium driven over the DevTools pipe (``--remote-debugging-pipe``), standard library only.

    with Chromium() as browser:                       # one browser process; raises BrowserMissing without one
        page = browser.open("report.html")            # a new tab, loaded; requests and console recorded
        page.eval("document.querySelectorAll('tbody tr').length")
        page.click("th[data-col=score]")
        png = page.screenshot()                       # PNG bytes
        page.close()

What the report's browser tests and ``bench report`` need from a browser, nothing more: load a file, run
JavaScript, click, take a screenshot, and see every request the page makes (``page.requests``: URLs of
``Network.requestWillBeSent``) and every console error or uncaught exception (``page.errors``).

The protocol: Chromium reads JSON messages separated by NUL bytes from file descriptor 3 and writes its own
to file descriptor 4. A command is ``{"id", "method", "params", "sessionId"}``; the answer carries the same
id; events carry no id. One tab is one target attached in "flatten" mode (its commands carry its
``sessionId``). The browser runs with a fresh profile folder (removed at :meth:`Chromium.close`), no GPU, no
sandbox (root in a container), and every background service that would reach the network switched off.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["Chromium", "Page", "BrowserMissing", "find_chromium", "CHROMIUM_FLAGS"]

#: The flags every launch uses (the user data folder is added per launch).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
                  "--remote-debugging-pipe")
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


class BrowserMissing(RuntimeError):
    """No Chromium binary on this machine (tests skip with this message)."""


def find_chromium() -> str | None:
    """Path of a Chromium binary: ``$CHROMIUM`` when set, else the first of chromium, chromium-browser,
    google-chrome on PATH (Debian's package installs /usr/bin/chromium)."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """One headless browser process (module doc). ``timeout``: seconds to wait for any one answer."""

    def __init__(self, binary: str | None = None, timeout: float = 30.0, window: tuple[int, int] = (1280, 900)):
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserMissing("no Chromium binary found (apt-get install chromium, or set $CHROMIUM)")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="clifvqa-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def fds() -> None:   # in the child: the pipe ends at fd 3 (commands in) and fd 4 (answers out)
            r, w = os.dup(to_browser_r), os.dup(from_browser_w)   # above 4: dup2 cannot clobber one with the other
            os.dup2(r, 3)
            os.dup2(w, 4)
            os.close(r)
            os.close(w)

        args = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                f"--window-size={window[0]},{window[1]}", "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, pass_fds=(3, 4),
                                     preexec_fn=fds)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self.version = self.send("Browser.getVersion")

    # -- the wire ----------------------------------------------------------------------------------------
    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and wait for its answer (events seen meanwhile are kept for the pages)."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            got = self._read(deadline)
            if got.get("id") == self._next_id:
                if "error" in got:
                    raise RuntimeError(f"{method}: {got['error'].get('message')}")
                return got.get("result", {})
            self._events.append(got)

    def _read(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError(f"Chromium gave no answer within {self.timeout:.0f} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe (it exited)")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def wait_event(self, method: str, session: str, timeout: float | None = None) -> dict[str, Any]:
        """The first event ``method`` of ``session`` (already received or still to come)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for k, ev in enumerate(self._events):
                if ev.get("method") == method and ev.get("sessionId") == session:
                    return self._events.pop(k)
            self._events.append(self._read(deadline))

    def take_events(self, session: str) -> list[dict[str, Any]]:
        mine = [e for e in self._events if e.get("sessionId") == session]
        self._events = [e for e in self._events if e.get("sessionId") != session]
        return mine

    # -- pages -------------------------------------------------------------------------------------------
    def open(self, path: str | Path, width: int = 1280, height: int = 900) -> "Page":
        """A new tab showing ``path`` (a local file), loaded (the load event fired)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 1, "mobile": False}, session)
        page.load(path)
        return page

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close")
                except (RuntimeError, TimeoutError, OSError):
                    pass
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        finally:
            for fd in (self._to_browser, self._from_browser):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    """One tab (:meth:`Chromium.open`). ``requests``: every URL the page asked for; ``errors``: console errors
    and uncaught exceptions, as text; ``load_seconds``: navigation to the load event."""

    def __init__(self, browser: Chromium, target: str, session: str) -> None:
        self.browser, self.target, self.session = browser, target, session
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.load_seconds = 0.0

    def load(self, path: str | Path) -> None:
        url = Path(path).resolve().as_uri()
        t0 = time.perf_counter()
        self.browser.send("Page.navigate", {"url": url}, self.session)
        self.browser.wait_event("Page.loadEventFired", self.session)
        self.load_seconds = time.perf_counter() - t0
        self.url = url
        self._collect()

    def _collect(self) -> None:
        for ev in self.browser.take_events(self.session):
            method, p = ev.get("method"), ev.get("params", {})
            if method == "Network.requestWillBeSent":
                self.requests.append(p["request"]["url"])
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                self.errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                self.errors.append(p["entry"].get("text", ""))

    def outside_requests(self) -> list[str]:
        """Requests for anything but the page's own file and inline ``data:`` URIs."""
        self._collect()
        return [u for u in self.requests if u != self.url and not u.startswith("data:")]

    def eval(self, expression: str) -> Any:
        """Value of a JavaScript expression (JSON-able), run in the page; a thrown error raises RuntimeError."""
        got = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                     "awaitPromise": True}, self.session)
        self._collect()
        if "exceptionDetails" in got:
            d = got["exceptionDetails"]
            raise RuntimeError(d.get("exception", {}).get("description") or d.get("text", "error"))
        return got.get("result", {}).get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) at the centre of the first element matching ``selector``."""
        box = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
                        " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                        " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        if box is None:
            raise RuntimeError(f"no element matches {selector!r}")
        for kind in ("mousePressed", "mouseReleased"):
            self.browser.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                           "clickCount": 1}, self.session)
        self._collect()

    def type_into(self, selector: str, text: str) -> None:
        """Focus the input ``selector``, clear it and type ``text`` (input events fire as for a person)."""
        self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus(); e.value = '';"
                  " e.dispatchEvent(new Event('input', {bubbles: true})); })()")
        self.browser.send("Input.insertText", {"text": text}, self.session)
        self._collect()

    def screenshot(self, full_page: bool = False) -> bytes:
        """PNG of the viewport (``full_page``: of the whole document)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            w, h = self.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1})
        data = self.browser.send("Page.captureScreenshot", params, self.session)["data"]
        self._collect()
        return base64.b64decode(data)

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})
