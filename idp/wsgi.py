"""WSGI entry point for the production servers: `idp serve` runs granian (or gunicorn) on
`idp.wsgi:app`.

`app` is the Flask app behind a thin layer that answers GET and HEAD of the two discovery
documents and the JWKS from pre-serialised bytes: the status, headers and body that Flask itself
produced for the same path, replayed while the key ring they were built from is current. Those
three are the most frequently fetched documents and are identical for every caller, so they skip
Flask's request context, routing and after-request hooks (bench/README.md has the numbers).

What stays exactly as Flask does it: the headers (security headers, CORS, Cache-Control), the
Host check (a request whose Host is not the issuer's goes through Flask, which refuses it), and
key rotation (the snapshot is taken again as soon as Flask reloads its key ring, which happens
IDP_KEYS_CACHE_SECONDS after the last load, so a new key is published no later than before).
Other methods (OPTIONS for CORS) and other paths go through Flask unchanged; a query string is
ignored, as Flask's views ignore it.
"""
from __future__ import annotations

import time

from idp import create_app

SNAPSHOT_PATHS = frozenset({"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", "/jwks"})


class Snapshots:
    """Replays Flask's own response for SNAPSHOT_PATHS while the key ring it came from is fresh."""

    def __init__(self, flask_app):
        self.flask_app = flask_app
        self.cache_seconds = flask_app.config["IDP_SETTINGS"].keys_cache_seconds
        self.hosts = {h.lower() for h in flask_app.config["TRUSTED_HOSTS"]}
        self.entries: dict[str, tuple] = {}  # path -> (key ring, status, headers, body)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        if path not in SNAPSHOT_PATHS or method not in ("GET", "HEAD") or not self._host_is_trusted(environ):
            return self.flask_app(environ, start_response)
        entry = self.entries.get(path)
        ring = self.flask_app.extensions.get("idp.keyring")
        if entry is None or entry[0] is not ring or ring is None or \
                time.monotonic() - ring.loaded_at > self.cache_seconds:
            return self._render(path, environ, start_response)
        start_response(entry[1], list(entry[2]))
        return [entry[3]] if method == "GET" else [b""]

    def _host_is_trusted(self, environ) -> bool:
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        if host.startswith("["):
            name = host.split("]", 1)[0] + "]"
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name.lower() in self.hosts

    def _render(self, path: str, environ, start_response):
        """Let Flask answer (refreshing its key ring when due) and keep a copy of a plain 200."""
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return start_response(status, headers, exc_info)

        chunks = self.flask_app(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        headers = captured.get("headers", [])
        cacheable = captured.get("status", "").startswith("200") and environ["REQUEST_METHOD"] == "GET" and \
            not any(name.lower() in ("set-cookie", "vary") for name, _ in headers)
        ring = self.flask_app.extensions.get("idp.keyring")
        if cacheable and ring is not None:
            self.entries[path] = (ring, captured["status"], tuple(headers), body)
        return [body]


flask_app = create_app()
app = Snapshots(flask_app)
