"""Playwright fixtures: one Chromium per test session (Debian's /usr/bin/chromium, never a
downloaded one), a fresh context per test that records console errors, uncaught page errors and
CSP violations, and a stand-in client application (a tiny HTTP server on its own loopback port)
that records what the provider sends back to it.

Playwright's sync API drives an asyncio loop from a greenlet, and while the driver lives it leaves
that loop marked as *running* in the main thread. Other tests in the same process (asyncio.run,
aiosmtpd, another sync_playwright) would then fail with "cannot be called from a running event
loop". So the loop is marked running only while a browser test runs, and cleared between tests.
"""
from __future__ import annotations

import asyncio
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 5_000

# Reports every securitypolicyviolation to Python. It is an init script (added by the test, not
# served by the provider), so the provider's CSP does not apply to it.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", function (e) {
  window.__idpReportViolation({directive: e.violatedDirective, blocked: e.blockedURI,
                               source: e.sourceFile, line: e.lineNumber, page: location.href});
});
"""

DOCUMENT_STATUS = "Failed to load resource: the server responded with a status of "


class _Loop:
    """Playwright's event loop, marked running in this thread only inside a browser test."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()

    def enter(self):
        asyncio._set_running_loop(self.loop)

    def leave(self):
        asyncio._set_running_loop(None)


@pytest.fixture(scope="session")
def _playwright():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run the browser tests "
                    "(.ci/run does)")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    except Exception:
        playwright.stop()
        raise
    loop = _Loop()
    loop.leave()
    yield browser, loop
    loop.enter()
    browser.close()
    playwright.stop()


class Watch:
    """What went wrong in the browser while a test ran: console errors, uncaught exceptions,
    CSP violations; and every provider page it navigated to."""

    def __init__(self, issuer: str):
        self.issuer = issuer
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.violations: list[dict] = []
        self.provider_pages: list[str] = []
        self.documents: set[str] = set()

    def attach(self, context) -> None:
        self.context = context
        context.expose_function("__idpReportViolation", self._violation)
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        context.on("console", self._console)
        context.on("weberror", lambda error: self.page_errors.append(str(error.error)))
        context.on("request", self._request)

    def _violation(self, report: dict) -> None:
        self.violations.append(report)

    def _console(self, message) -> None:
        # The browser's own /favicon.ico request logs its 404 whenever it happens to finish, often
        # after the test; test_pages checks the icon once, deterministically.
        # Chromium also logs the status of a 4xx page itself; the tests assert those statuses.
        url = message.location.get("url") or ""
        if message.type != "error" or urlsplit(url).path == "/favicon.ico":
            return
        if url in self.documents and message.text.startswith(DOCUMENT_STATUS):
            return
        self.console_errors.append(f"{message.text} ({url})")

    def _request(self, request) -> None:
        if not request.is_navigation_request():
            return
        self.documents.add(request.url)
        if request.url.startswith(self.issuer + "/"):
            self.provider_pages.append(request.url)

    def paths_navigated(self) -> list[str]:
        """The provider's pages this browser has loaded (not their images, styles or scripts)."""
        return [urlsplit(url).path for url in self.provider_pages]

    def assert_clean(self) -> None:
        for page in self.context.pages:  # a round trip delivers reports still on their way
            page.evaluate("0")
        assert self.violations == [], f"CSP violations: {self.violations}"
        assert self.page_errors == [], f"uncaught page errors: {self.page_errors}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"


@pytest.fixture
def new_context(_playwright, live_server):
    """Opens fresh, watched browser contexts (cookies and storage of their own); closes them after."""
    browser, loop = _playwright
    loop.enter()
    opened = []

    def open_context(**options):
        context = browser.new_context(base_url=live_server, **options)
        context.set_default_timeout(TIMEOUT_MS)
        watch = Watch(live_server)
        watch.attach(context)
        opened.append(context)
        return context, watch

    yield open_context
    try:
        for context in opened:
            context.close()
    finally:
        loop.leave()


@pytest.fixture
def browser_page(new_context):
    """A page in a fresh context (desktop viewport) and the Watch recording it."""
    context, watch = new_context()
    return context.new_page(), watch


class StandInClient:
    """The client application: records each request to its redirect URI (query or form body)
    and answers with a plain page; or, with `forward_to`, with a 302 there carrying the same
    query, as a broker's callback answers its own client (another origin) in the same navigation."""

    PAGE = (b'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Client</title></head>'
            b"<body><h1>Back at the client</h1></body></html>")

    def __init__(self, forward_to: str | None = None):
        self.received: list[dict] = []
        self._arrived = threading.Condition()
        client = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._answer(parse_qs(urlsplit(self.path).query))

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(parse_qs(self.rfile.read(length).decode("ascii")))

            def _answer(self, params):
                if urlsplit(self.path).path != "/callback":  # the browser's favicon request
                    self.send_response(204)
                    self.end_headers()
                    return
                with client._arrived:
                    client.received.append({"method": self.command, "path": self.path,
                                            "content_type": self.headers.get("Content-Type", ""),
                                            "params": {k: v[0] for k, v in params.items()}})
                    client._arrived.notify_all()
                if forward_to is not None:
                    self.send_response(302)
                    self.send_header("Location", f"{forward_to}?{urlsplit(self.path).query}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(client.PAGE)))
                self.end_headers()
                self.wfile.write(client.PAGE)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.redirect_uri = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def only_callback(self) -> dict:
        """The one request that reached the redirect URI."""
        with self._arrived:
            self._arrived.wait_for(lambda: self.received, timeout=TIMEOUT_MS / 1000)
        assert len(self.received) == 1, self.received
        return self.received[0]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in_client():
    """Starts stand-in client applications, each on a free loopback port; stops them after."""
    started = []

    def start(forward_to: str | None = None) -> StandInClient:
        started.append(StandInClient(forward_to))
        return started[-1]

    yield start
    for client in started:
        client.close()
