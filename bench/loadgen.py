"""The Python load generator: asyncio, one keep-alive HTTP/1.1 connection per virtual user, to
127.0.0.1 only. It drives the two multi-step scenarios (the authorization code + PKCE round trip
and password sign-in) and, when wrk is missing, the single-request ones too.

Run by bench/run.py as its own process: `python bench/loadgen.py CONFIG.json`; prints one JSON
line with the counts and latencies. Every loop is bounded by a deadline and a request budget.
A "flow" is one unit of work as a client sees it (one request, or two for the multi-step
scenarios); its latency is from the first byte sent to the last byte of the last response.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import resource
import secrets
import sys
import time
from urllib.parse import parse_qs, quote, urlencode, urlsplit

HOST = "127.0.0.1"  # traffic goes to loopback only, whatever the config says
REQUEST_TIMEOUT = 10.0
CSRF_FIELD = re.compile(rb'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


class HttpError(Exception):
    """A response that is not what the scenario expects (counted as an error)."""


class Connection:
    """A minimal HTTP/1.1 client connection: keep-alive, Content-Length or chunked bodies."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, headers: list[tuple[str, str]] = (), body: bytes = b""):
        if self.writer is None:
            await self.open()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            status, response_headers, response_body = await asyncio.wait_for(self._read(), REQUEST_TIMEOUT)
        except BaseException:
            self.close()
            raise
        if response_headers.get("connection", "").lower() == "close":
            self.close()
        return status, response_headers, response_body

    async def _read(self):
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            if name == "set-cookie":
                cookies.append(value)
            headers[name] = value
        headers["_cookies"] = cookies
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked()
        elif status in (204, 304):
            body = b""
        else:
            body = await self.reader.read()  # until the server closes
            headers["connection"] = "close"
        return status, headers, body

    async def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


def cookie_value(set_cookies: list[str], name: str) -> str | None:
    for header in set_cookies:
        pair = header.split(";", 1)[0]
        key, _, value = pair.partition("=")
        if key.strip() == name:
            return value.strip()
    return None


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


# --- scenarios: each is `async def flow(conn, cfg, vu) -> None` and raises on anything unexpected ---
async def get_expect_200(conn, cfg, vu):
    status, _, body = await conn.request("GET", cfg["path"], cfg.get("headers", []))
    if status != 200 or not body:
        raise HttpError(f"GET {cfg['path']}: {status}")


async def client_credentials(conn, cfg, vu):
    status, _, body = await conn.request(
        "POST", "/token", [("Authorization", cfg["basic"]), ("Content-Type", "application/x-www-form-urlencoded")],
        b"grant_type=client_credentials&scope=" + quote(cfg["cc_scope"]).encode())
    if status != 200 or b'"access_token"' not in body:
        raise HttpError(f"client_credentials: {status}")


async def userinfo(conn, cfg, vu):
    status, _, body = await conn.request("GET", "/userinfo", [("Authorization", "Bearer " + cfg["access_token"])])
    if status != 200 or b'"sub"' not in body:
        raise HttpError(f"userinfo: {status}")


async def code_flow(conn, cfg, vu):
    """GET /authorize with the SSO cookie -> 302 with code, state and iss -> POST /token with the
    code_verifier (client_secret_basic) -> 200 with an ID token and an access token."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    query = urlencode({"response_type": "code", "client_id": cfg["client_id"], "redirect_uri": cfg["redirect_uri"],
                       "scope": cfg["code_scope"], "state": state, "nonce": nonce, "code_challenge": challenge,
                       "code_challenge_method": "S256"})
    cookie = cfg["session_cookies"][vu % len(cfg["session_cookies"])]
    status, headers, _ = await conn.request("GET", "/authorize?" + query, [("Cookie", cookie)])
    location = headers.get("location", "")
    if status != 302 or not location.startswith(cfg["redirect_uri"] + "?"):
        raise HttpError(f"authorize: {status} {location[:80]}")
    params = parse_qs(urlsplit(location).query)
    if params.get("state") != [state] or params.get("iss") != [cfg["issuer"]] or "code" not in params:
        raise HttpError("authorize: state, iss or code missing or wrong")
    body = urlencode({"grant_type": "authorization_code", "code": params["code"][0],
                      "redirect_uri": cfg["redirect_uri"], "code_verifier": verifier}).encode()
    status, _, body = await conn.request(
        "POST", "/token", [("Authorization", cfg["basic"]), ("Content-Type", "application/x-www-form-urlencoded")], body)
    if status != 200:
        raise HttpError(f"token: {status}")
    tokens = json.loads(body)
    if not tokens.get("id_token") or not tokens.get("access_token") or tokens.get("token_type") != "Bearer":
        raise HttpError("token: no id_token or access_token")


async def password_login(conn, cfg, vu):
    """GET /login (the CSRF token and the browser cookie that carries it) -> POST /login -> 303
    with a new SSO session cookie. A fresh browser each time, as a person signing in would be."""
    status, headers, body = await conn.request("GET", "/login?next=/account")
    match = CSRF_FIELD.search(body)
    browser = cookie_value(headers["_cookies"], cfg["browser_cookie"])
    if status != 200 or not match or not browser:
        raise HttpError(f"GET /login: {status}, csrf={bool(match)}, cookie={bool(browser)}")
    csrf_token = (match.group(1) or match.group(2)).decode()
    user = cfg["users"][vu % len(cfg["users"])]
    form = urlencode({"csrf_token": csrf_token, "next": "/account", "login": user, "password": cfg["password"]})
    status, headers, _ = await conn.request(
        "POST", "/login", [("Cookie", f"{cfg['browser_cookie']}={browser}"),
                           ("Content-Type", "application/x-www-form-urlencoded")], form.encode())
    if status != 303 or not cookie_value(headers["_cookies"], cfg["session_cookie"]):
        raise HttpError(f"POST /login: {status}")


SCENARIOS = {"discovery": get_expect_200, "jwks": get_expect_200, "client_credentials": client_credentials,
             "userinfo": userinfo, "code_flow": code_flow, "password_login": password_login}


async def virtual_user(vu: int, cfg: dict, deadline: float, budget: int, stats: dict, pacer=None):
    """Run flows back to back (closed loop), or, with a pacer, at the slots it hands out (open loop:
    latency counts from the scheduled start, so a server that falls behind shows it)."""
    flow = SCENARIOS[cfg["scenario"]]
    conn = Connection(cfg["port"])
    done = 0
    try:
        while time.monotonic() < deadline and done < budget:
            if pacer is not None:
                scheduled = pacer()
                if scheduled is None or scheduled >= deadline:
                    break
                delay = scheduled - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                started = time.perf_counter() - max(0.0, time.monotonic() - scheduled)
            else:
                started = time.perf_counter()
            try:
                await flow(conn, cfg, vu)
            except (HttpError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                    asyncio.LimitOverrunError, ValueError) as error:
                stats["errors"] += 1
                key = type(error).__name__ + ": " + str(error)[:100]
                stats["error_samples"][key] = stats["error_samples"].get(key, 0) + 1
                conn.close()
            else:
                stats["latencies"].append(time.perf_counter() - started)
            done += 1
    finally:
        conn.close()


def make_pacer(rate: float, start: float, limit: int):
    """Hands out start times start, start + 1/rate, ... (at most limit of them)."""
    state = {"next": 0}

    def next_slot():
        i = state["next"]
        if i >= limit:
            return None
        state["next"] = i + 1
        return start + i / rate
    return next_slot


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


async def run(cfg: dict) -> dict:
    stats = {"errors": 0, "latencies": [], "error_samples": {}}
    connections = cfg["connections"]
    budget = max(1, cfg["max_flows"] // connections)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    deadline = started + cfg["duration"]
    pacer = None
    if cfg.get("rate"):
        pacer = make_pacer(cfg["rate"], started, int(cfg["rate"] * cfg["duration"]) + 1)
        budget = cfg["max_flows"]
    await asyncio.gather(*(virtual_user(vu, cfg, deadline, budget, stats, pacer) for vu in range(connections)))
    elapsed = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    latencies = sorted(stats["latencies"])
    return {
        "flows": len(latencies), "errors": stats["errors"], "seconds": elapsed,
        "rate": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(latencies, 50) * 1000, "p90_ms": percentile(latencies, 90) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000, "max_ms": (latencies[-1] * 1000) if latencies else float("nan"),
        "loadgen_cpu_s": (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime),
        "error_samples": dict(sorted(stats["error_samples"].items(), key=lambda kv: -kv[1])[:5]),
    }


def main():
    with open(sys.argv[1]) as handle:
        cfg = json.load(handle)
    result = asyncio.run(run(cfg))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
