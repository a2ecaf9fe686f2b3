"""Headless Chromium driven over the DevTools protocol, for reading the built site as a reader does.

A small synchronous client on the ``websockets`` package (no Playwright, no browser download):
:func:`launch` starts the system Chromium with its networking cut off, :func:`serve` serves a
folder on 127.0.0.1, and :class:`Tab` loads pages and records everything that went wrong on
them: console errors, uncaught exceptions, failed responses, and any request that tried to
leave localhost (refused, and recorded), from the page and from the workers it starts (each
worker is attached as it starts, paused until the same checks are on for it).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from websockets.sync.client import connect

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# The flags the project asks for, plus what a headless run in a container needs.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
    # No name resolves, so nothing but 127.0.0.1 is reachable even outside the page's own
    # requests (which the Fetch domain also intercepts, see Tab).
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--remote-debugging-port=0",
]


class DevToolsError(RuntimeError):
    pass


def find_chromium() -> str | None:
    """The Chromium to use: $CHROMIUM if set, else the first candidate found on this machine."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on an ephemeral port of 127.0.0.1; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            # A browser that moves on to the next page drops requests it no longer needs
            # (e.g. the automatic /favicon.ico): not an error of the site.
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def launch(executable: str, timeout: float = 30.0) -> Iterator["Browser"]:
    """Start Chromium with a throw-away profile and connect to it."""
    profile = Path(tempfile.mkdtemp(prefix="attnbook-chromium-"))
    # Chromium's log goes to a file, not a pipe: a full pipe would block the browser.
    log_path = profile.with_name(profile.name + ".log")
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None:
                raise DevToolsError(
                    f"{executable} exited with code {proc.returncode} before opening DevTools:\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            if time.monotonic() > deadline:
                raise DevToolsError(f"{executable} did not open DevTools within {timeout:.0f} s")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=15) as ws:
            yield Browser(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        log_path.unlink(missing_ok=True)
        shutil.rmtree(profile, ignore_errors=True)


class Browser:
    """One DevTools connection; pages are flat sessions on it."""

    def __init__(self, ws):
        self.ws = ws
        self._next_id = 0
        self._handlers: dict[str, "Tab"] = {}

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        return self._next_id

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        """Send a command and wait for its reply, dispatching events that arrive meanwhile."""
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(deadline, f"the reply to {method}")
            if message.get("id") == wanted:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                return message.get("result", {})

    def receive(self, deadline: float, waiting_for: str) -> dict:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out waiting for {waiting_for}")
        try:
            message = json.loads(self.ws.recv(timeout=remaining))
        except TimeoutError:
            raise TimeoutError(f"timed out waiting for {waiting_for}") from None
        if "method" in message and message.get("sessionId") in self._handlers:
            self._handlers[message["sessionId"]].on_event(message["method"], message["params"],
                                                          message["sessionId"])
        return message

    def new_tab(self, allowed_origin: str) -> "Tab":
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        tab = Tab(self, session, allowed_origin)
        self._handlers[session] = tab
        tab.enable()
        return tab


@dataclass
class Visit:
    """What one page load left behind."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    loads: int = 0


class Tab:
    """A page session: every request leaving ``allowed_origin`` is refused and recorded."""

    def __init__(self, browser: Browser, session: str, allowed_origin: str):
        self.browser = browser
        self.session = session
        self.allowed = urlsplit(allowed_origin)
        self.visit = Visit(url="about:blank")
        self.workers: list[str] = []
        self._urls: dict[str, str] = {}

    def call(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        return self.browser.call(method, params, self.session, timeout)

    def enable(self) -> None:
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Fetch.enable", {"patterns": [{"urlPattern": "*"}]})
        # Workers the page starts: attach to each, paused, so its requests are checked too.
        self.call("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": True,
                                           "flatten": True})

    def _attach_worker(self, params: dict) -> None:
        session = params["sessionId"]
        if params["targetInfo"]["type"] not in ("worker", "shared_worker", "service_worker"):
            self.browser.send("Runtime.runIfWaitingForDebugger", None, session)
            return
        self.browser._handlers[session] = self
        self.workers.append(params["targetInfo"].get("url", ""))
        # Sent without waiting (this runs inside the event loop); the browser handles a
        # session's commands in order, so the checks are on before the worker runs.
        for domain in ("Runtime", "Log", "Network"):
            self.browser.send(f"{domain}.enable", None, session)
        self.browser.send("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}, session)
        self.browser.send("Runtime.runIfWaitingForDebugger", None, session)

    def _is_local(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return True
        return (parts.scheme, parts.hostname, parts.port) == (
            self.allowed.scheme, self.allowed.hostname, self.allowed.port)

    def on_event(self, method: str, params: dict, session: str | None = None) -> None:
        visit = self.visit
        session = session or self.session
        if method == "Target.attachedToTarget":
            self._attach_worker(params)
        elif method == "Fetch.requestPaused":
            # Answered at once (a paused request blocks the page), without waiting for the reply.
            url = params["request"]["url"]
            if self._is_local(url):
                self.browser.send("Fetch.continueRequest", {"requestId": params["requestId"]}, session)
            else:
                visit.outside_requests.append(url)
                self.browser.send("Fetch.failRequest",
                                  {"requestId": params["requestId"], "errorReason": "BlockedByClient"},
                                  session)
        elif method == "Network.requestWillBeSent":
            self._urls[params["requestId"]] = params["request"]["url"]
            visit.requests.append(params["request"]["url"])
        elif method == "Network.responseReceived":
            status = params["response"]["status"]
            if status >= 400:
                visit.failed_requests.append(f"{params['response']['url']} (HTTP {status})")
        elif method == "Network.loadingFailed":
            url = self._urls.get(params["requestId"], "?")
            if params.get("errorText") != "net::ERR_BLOCKED_BY_CLIENT" or self._is_local(url):
                visit.failed_requests.append(f"{url} ({params.get('errorText')})")
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            visit.console_errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            visit.console_errors.append(f"uncaught: {text}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            visit.console_errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip())
        elif method == "Page.loadEventFired":
            visit.loads += 1

    def open(self, url: str, timeout: float = 30.0) -> Visit:
        """Load ``url`` (following a redirect page) and wait until it has settled."""
        self.visit = Visit(url=url)
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            self.visit.failed_requests.append(f"{url} ({result['errorText']})")
            return self.visit
        deadline = time.monotonic() + timeout
        while self.visit.loads == 0:
            self.browser.receive(deadline, f"the load of {url}")
        # A redirect page (index.html's meta refresh) starts a second load, which destroys the
        # context an evaluation runs in: wait until a settled document answers twice.
        settled = 0
        while settled < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not settle within {timeout:.0f} s")
            try:
                ready = self.evaluate("new Promise(r => setTimeout(() => r(document.readyState), 100))")
            except DevToolsError:
                ready = None
            settled = settled + 1 if ready == "complete" else 0
        return self.visit

    def evaluate(self, expression: str, timeout: float = 60.0) -> Any:
        """Evaluate JavaScript in the page (awaiting a promise) and return its JSON value."""
        result = self.call("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True,
        }, timeout=timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise DevToolsError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    def prefer_color_scheme(self, scheme: str) -> None:
        self.call("Emulation.setEmulatedMedia",
                  {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
