"""Where the time goes: CPU cost per request of each benchmark scenario, measured in-process
(the WSGI callable of idp.wsgi, no HTTP server and no load generator), plus the cost of the
building blocks (an RS256 and an ES256 signature, an argon2 verification at the configured
parameters, one database round trip). CPU time is this process's (time.process_time), so the
numbers hold on a busy machine better than throughput does; PostgreSQL's own CPU is added from
its backend's /proc entry.

    .venv/bin/python bench/costs.py --db postgres [--n 300] [--profile]

--profile adds, per scenario, the share of CPU time by package (self time under cProfile with a
CPU clock; the profiler inflates code that makes many small Python calls, so read the shares as
an ordering, and the unprofiled ms/request as the truth).
"""
from __future__ import annotations

import argparse
import base64
import cProfile
import hashlib
import io
import json
import os
import pstats
import re
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: database, env and seed helpers)

PORT = 5999  # only the issuer URL; nothing listens


class Browser:
    """Calls a WSGI app directly with a cookie jar, as the HTTP client would."""

    def __init__(self, app):
        self.app = app
        self.cookies: dict[str, str] = {}

    def environ(self, method, path, body=b"", headers=()):
        path, _, query = path.partition("?")
        env = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": str(PORT), "HTTP_HOST": f"127.0.0.1:{PORT}", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(body), "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": str(len(body)),
               "REMOTE_ADDR": "127.0.0.1", "wsgi.errors": sys.stderr, "wsgi.multithread": True,
               "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0)}
        if body:
            env["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
        if self.cookies:
            env["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for name, value in headers:
            env["HTTP_" + name.upper().replace("-", "_")] = value
        return env

    def call(self, method, path, body=b"", headers=(), keep_cookies=True):
        out = {}

        def start_response(status, response_headers, exc_info=None):
            out["status"], out["headers"] = int(status.split()[0]), response_headers

        chunks = self.app(self.environ(method, path, body, headers), start_response)
        try:
            data = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        headers = {}
        for name, value in out["headers"]:
            if name.lower() == "set-cookie" and keep_cookies:
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";", 1)[0]
            headers[name.lower()] = value
        return out["status"], headers, data


def csrf_of(html: bytes) -> str:
    return bench.csrf_of(html.decode())


def setup_flows(app, seed, client_basic):
    """Sign in and consent once; return the functions each scenario repeats."""
    browser = Browser(app)
    _, _, page = browser.call("GET", "/login")
    form = urlencode({"csrf_token": csrf_of(page), "login": seed["users"][0], "password": bench.PASSWORD,
                      "next": "/account"}).encode()
    status, _, _ = browser.call("POST", "/login", form)
    assert status == 303, status
    session_cookie = {"idp_session": browser.cookies["idp_session"]}

    def authorize_query():
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode({"response_type": "code", "client_id": seed["client_id"], "redirect_uri": seed["redirect_uri"],
                           "scope": seed["scope"], "state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16),
                           "code_challenge": challenge, "code_challenge_method": "S256"})
        return verifier, query

    verifier, query = authorize_query()
    status, headers, page = browser.call("GET", "/authorize?" + query)
    if status == 200:  # the consent page, once
        pending_id = re.search(rb'name="pending_id"[^>]*value="([^"]+)"', page).group(1).decode()
        sid = re.search(rb'name="sid"[^>]*value="([^"]+)"', page).group(1).decode()  # the form is tied to the session
        status, headers, _ = browser.call("POST", "/authorize/consent", urlencode(
            {"csrf_token": csrf_of(page), "pending_id": pending_id, "sid": sid, "decision": "allow"}).encode())
    assert status == 302, status
    code = parse_qs(urlsplit(headers["location"]).query)["code"][0]
    status, _, body = browser.call("POST", "/token", urlencode({
        "grant_type": "authorization_code", "code": code, "redirect_uri": seed["redirect_uri"],
        "code_verifier": verifier}).encode(), [("Authorization", client_basic)])
    assert status == 200, (status, body[:300])
    access_token = json.loads(body)["access_token"]
    rp = Browser(app)
    rp.cookies = dict(session_cookie)

    def code_flow():
        verifier, query = authorize_query()
        status, headers, _ = rp.call("GET", "/authorize?" + query, keep_cookies=False)
        assert status == 302, status
        code = parse_qs(urlsplit(headers["location"]).query)["code"][0]
        status, _, body = rp.call("POST", "/token", urlencode({
            "grant_type": "authorization_code", "code": code, "redirect_uri": seed["redirect_uri"],
            "code_verifier": verifier}).encode(), [("Authorization", client_basic)], keep_cookies=False)
        assert status == 200 and b"id_token" in body, (status, body[:200])

    def password_login():
        person = Browser(app)
        status, _, page = person.call("GET", "/login?next=/account")
        status, _, _ = person.call("POST", "/login", urlencode({
            "csrf_token": csrf_of(page), "login": seed["users"][0], "password": bench.PASSWORD,
            "next": "/account"}).encode())
        assert status == 303, status

    def get(path, headers=()):
        def once():
            status, _, _ = Browser(app).call("GET", path, headers=headers)
            assert status == 200, (path, status)
        return once

    def client_credentials():
        status, _, _ = Browser(app).call("POST", "/token", b"grant_type=client_credentials&scope=profile",
                                         [("Authorization", client_basic)])
        assert status == 200, status

    return {"healthz (Flask floor)": get("/healthz"),
            "discovery": get("/.well-known/openid-configuration"), "jwks": get("/jwks"),
            "client_credentials": client_credentials,
            "userinfo": get("/userinfo", [("Authorization", "Bearer " + access_token)]),
            "code_flow": code_flow, "password_login": password_login}


def building_blocks(app) -> dict:
    """CPU ms of the pieces the scenarios are made of."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from sqlalchemy import text

    from idp.extensions import db
    from idp.oauth.tokens import sign
    from idp.security import passwords
    from idp.users.directory import hasher

    rsa_key = rsa.generate_private_key(65537, 2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    message = b"x" * 400
    with app.app_context():
        stored = passwords.hash_password(hasher(), "bench horse battery staple")

    def in_app(fn):
        def wrapped():
            with app.app_context():
                fn()
        return wrapped

    def db_request():
        with app.app_context():
            db.session.execute(text("SELECT 1")).scalar()
            db.session.remove()

    def access_token_jwt():
        with app.test_request_context():
            sign({"typ": "at+jwt"}, {"iss": "x", "sub": "y", "aud": "z", "iat": 1, "exp": 2, "jti": "j",
                                     "client_id": "c", "scope": "openid"})

    return {
        "RSA-2048 PKCS#1 v1.5 signature (cryptography)": (lambda: rsa_key.sign(message, padding.PKCS1v15(), hashes.SHA256()), 200),
        "ES256 signature (cryptography)": (lambda: ec_key.sign(message, ec.ECDSA(hashes.SHA256())), 1000),
        "one JWT via idp.oauth.tokens.sign (joserfc, current key)": (access_token_jwt, 200),
        "argon2id verify at the configured parameters": (in_app(lambda: passwords.verify_password(
            hasher(), stored, "bench horse battery staple")), 10),
        "DB: app context + session SELECT 1 + remove (pre-ping, BEGIN, ROLLBACK)": (db_request, 300),
    }


def cpu_ms(fn, n: int, backends) -> tuple[float, float, float]:
    """(process CPU ms, database backend CPU ms, wall ms) per call."""
    for _ in range(max(3, n // 20)):
        fn()
    pids = backends()
    db0 = bench.cpu_by_pid(pids)
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn()
    c1, w1 = time.process_time(), time.perf_counter()
    db1 = bench.cpu_by_pid(backends())
    db_cpu = sum(v - db0.get(pid, 0.0) for pid, v in db1.items())
    return 1000 * (c1 - c0) / n, 1000 * db_cpu / n, 1000 * (w1 - w0) / n


PACKAGES = [  # (share label, test on "file:func") in order; first match wins
    ("signature (OpenSSL via cryptography)", lambda k: "RSAPrivateKey" in k or "EllipticCurvePrivateKey" in k),
    ("argon2", lambda k: "argon2" in k),
    ("DB driver (psycopg / sqlite3)", lambda k: "psycopg" in k or "sqlite3" in k),
    ("SQLAlchemy", lambda k: "sqlalchemy" in k),
    ("Jinja", lambda k: "jinja2" in k or "markupsafe" in k),
    ("JOSE (joserfc, authlib.jose)", lambda k: "joserfc" in k or "authlib/jose" in k),
    ("authlib OAuth", lambda k: "authlib" in k),
    ("Flask, Werkzeug, Flask-WTF, itsdangerous", lambda k: any(p in k for p in (
        "flask", "werkzeug", "itsdangerous", "wtforms"))),
    ("idp", lambda k: "/idp/" in k),
    ("json", lambda k: "/json/" in k or "_json" in k),
]


def call_counts(fn, n: int, app) -> tuple[float, float]:
    """(Python function calls, SQL statements) per call: unlike CPU time they do not move with the
    machine's clock, so they show what a change saved even on a noisy VM."""
    from sqlalchemy import event

    from idp.extensions import db

    statements = [0]

    def count(*_args, **_kwargs):
        statements[0] += 1

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    profiler = cProfile.Profile()
    try:
        profiler.runcall(lambda: [fn() for _ in range(n)])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    calls = sum(nc for (_cc, nc, _tt, _ct, _callers) in pstats.Stats(profiler).stats.values())
    return calls / n, statements[0] / n


def profile_shares(fn, n: int) -> list[tuple[str, float]]:
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for _ in range(n):
        fn()
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    shares = Counter()
    for (file, _line, func), (_cc, _nc, tottime, _ct, _callers) in stats.items():
        key = f"{file}:{func}"
        label = next((name for name, test in PACKAGES if test(key)), "other (stdlib, interpreter)")
        shares[label] += tottime
    total = sum(shares.values()) or 1
    return [(label, 100 * t / total) for label, t in shares.most_common()]


def main():
    p = argparse.ArgumentParser(description="CPU cost per request, in-process")
    p.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    p.add_argument("--n", type=int, default=300, help="repetitions of the cheap scenarios (code flow n/3, logins n/30)")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--alg", choices=["RS256", "ES256"], default="RS256")
    p.add_argument("--top", metavar="SCENARIO", action="append", default=[],
                   help="print the functions with the most cumulative CPU time for this scenario (repeatable)")
    args = p.parse_args()
    run_args = bench.parse_args(["--db", args.db, "--pg-url", args.pg_url, "--alg", args.alg])
    print(f"machine: {os.cpu_count()} CPUs, {bench.cpu_model()}; background busy "
          f"{100 * bench.background_busy():.0f}%; db {args.db}; alg {args.alg}", flush=True)
    with tempfile.TemporaryDirectory(prefix="idp-costs-") as tmp, \
            bench.fresh_database(args.db, run_args, Path(tmp)) as database_url:
        env = bench.idp_env(database_url, Path(tmp) / "instance", PORT, run_args)
        env["IDP_LOG_LEVEL"] = "WARNING"
        bench.run_checked([str(bench.VENV_BIN / "idp"), "db", "upgrade"], env)
        seed = json.loads(bench.run_checked([sys.executable, str(bench.BENCH / "seed.py"), "1", bench.PASSWORD], env)
                          .strip().splitlines()[-1])
        os.environ.update(env)
        from idp import wsgi

        db_name = database_url.rsplit("/", 1)[1] if database_url else None
        backends = (lambda: bench.database_backends(db_name)) if db_name else (lambda: [])
        basic = "Basic " + base64.b64encode(f"{seed['client_id']}:{seed['client_secret']}".encode()).decode()
        flows = setup_flows(wsgi.app, seed, basic)
        flows["discovery, Flask only (no snapshot)"] = lambda: Browser(wsgi.flask_app).call(
            "GET", "/.well-known/openid-configuration")
        counts = {"code_flow": max(10, args.n // 3), "password_login": max(5, args.n // 30)}
        print(f"\n{'scenario (one flow)':<62} {'CPU ms':>8} {'DB CPU ms':>10} {'wall ms':>8} {'py calls':>9} {'SQL':>5}")
        for name, fn in flows.items():
            n = counts.get(name, args.n)
            cpu, db_cpu, wall = cpu_ms(fn, n, backends)
            calls, statements = call_counts(fn, max(3, n // 10), wsgi.flask_app)
            print(f"{name:<62} {cpu:8.3f} {db_cpu:10.3f} {wall:8.3f} {calls:9.0f} {statements:5.1f}", flush=True)
            if name in args.top:
                profiler = cProfile.Profile(time.process_time)
                profiler.runcall(lambda: [fn() for _ in range(max(5, n // 2))])
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(70)
                print(out.getvalue())
            if args.profile:
                shares = profile_shares(fn, max(5, n // 2))
                print("    " + "; ".join(f"{label} {share:.0f}%" for label, share in shares if share >= 1))
        print(f"\n{'building block':<62} {'CPU ms':>8} {'DB CPU ms':>10} {'wall ms':>8}")
        for name, (fn, n) in building_blocks(wsgi.flask_app).items():
            cpu, db_cpu, wall = cpu_ms(fn, max(5, n * args.n // 300), backends)
            print(f"{name:<62} {cpu:8.3f} {db_cpu:10.3f} {wall:8.3f}", flush=True)


if __name__ == "__main__":
    main()
