"""A headless Chromium driven over the DevTools protocol on a pipe (no extra packages, no browser download).

Chromium started with ``--remote-debugging-pipe`` reads protocol messages (JSON, each ended by a NUL byte) from
file descriptor 3 and writes answers and events to descriptor 4. :class:`Browser` opens one page, loads URLs,
evaluates JavaScript and collects every console error, uncaught exception and failed resource load.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

TRAMPOLINE = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); "
              "os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])")
FIREFOXES = ("firefox", "firefox-esr")
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """A Chromium-family browser on PATH (or ``DGN_TEST_BROWSER``), else None."""
    named = os.environ.get("DGN_TEST_BROWSER")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


class Browser:
    """One headless Chromium page. Use as a context manager."""

    def __init__(self, executable: str, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="dgn-chromium-")
        reads, self._to_child = os.pipe()
        self._from_child, writes = os.pipe()
        # numbers above 9, so that moving them to 3 and 4 cannot overwrite one of them
        child_reads, child_writes = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (reads, writes))
        os.close(reads)
        os.close(writes)
        # the browser must see them as descriptors 3 and 4: a small Python moves them there, then becomes it
        self.process = subprocess.Popen(
            [sys.executable, "-c", TRAMPOLINE, str(child_reads), str(child_writes), executable, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             f"--user-data-dir={self.profile}", "about:blank"],
            pass_fds=(child_reads, child_writes), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (child_reads, child_writes):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._send({"id": -1, "method": "Browser.close"})
        except OSError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def _send(self, message: dict) -> None:
        os.write(self._to_child, json.dumps(message).encode() + b"\0")

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("the browser did not answer in time")
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._send(message)
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            if "method" in answer:
                self.events.append(answer)

    def call(self, method: str, params: dict | None = None) -> dict:
        """A protocol command on the page's session."""
        return self._call(method, params, self.session)

    def wait_for(self, event: str) -> dict:
        """The next event named ``event`` (earlier ones already received count)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for i, seen in enumerate(self.events):
                if seen.get("method") == event:
                    return self.events.pop(i)
            answer = self._receive(deadline)
            if "method" in answer:
                self.events.append(answer)

    def load(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise RuntimeError(f"cannot load {url}: {result['errorText']}")
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (promises awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for_condition(self, expression: str) -> None:
        """Poll a JavaScript expression until it is true (pages update on events after a call returns)."""
        deadline = time.monotonic() + self.timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression} never became true")
            time.sleep(0.05)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen so far (and forgets them)."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(str(params["exceptionDetails"].get("exception", {}).get("description")
                                 or params["exceptionDetails"].get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"{params['entry'].get('text')} {params['entry'].get('url', '')}")
        self.events = [e for e in self.events if e.get("method") == "Page.loadEventFired"]
        return found

    # Every <img> of the page fully loaded and decoded (lazy ones are made eager first): their natural widths.
    IMAGE_WIDTHS = """Promise.all(Array.from(document.images).map(function (img) {
        img.loading = "eager";
        return img.decode().then(function () { return img.naturalWidth; }, function () { return 0; });
    }))"""


def find_firefox() -> str | None:
    """Firefox on PATH, else None."""
    return next((path for path in map(shutil.which, FIREFOXES) if path), None)


def firefox_screenshot(executable: str, url: str, path: Path, size: tuple[int, int] = (1000, 800)) -> Path:
    """A headless Firefox's picture of ``url`` once it has loaded (Firefox's own ``--screenshot``)."""
    profile = tempfile.mkdtemp(prefix="dgn-firefox-")
    try:
        subprocess.run([executable, "--headless", "--no-remote", "--profile", profile,
                        f"--window-size={size[0]},{size[1]}", "--screenshot", str(path), url],
                       check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return path
