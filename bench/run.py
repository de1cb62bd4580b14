"""The load benchmark (issue 2 item 20): `make bench BENCH_ARGS="..."`, or
`.venv/bin/python bench/run.py --db both --duration 30`.

For each database it prepares a fresh one (SQLite in a temporary folder, or a PostgreSQL database
it creates and drops), migrates it with `idp db upgrade`, seeds a confidential client and users,
starts `idp serve` (the production server configuration) on 127.0.0.1, signs the users in and
consents once over HTTP, checks that each scenario answers correctly, then drives load from
separate processes on loopback: wrk (Debian package `wrk`) for the single-request scenarios and
bench/loadgen.py for the multi-step ones (and for everything when wrk is missing). It writes
bench/results.md and prints it.

IDP_ENV=development is set only because the issuer is http://127.0.0.1:<port> (production refuses
a non-https issuer); nothing else in development mode changes what a request costs.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
PASSWORD = "bench horse battery staple"
SCENARIOS = ["discovery", "jwks", "client_credentials", "userinfo", "code_flow", "password_login"]
WRK_SCENARIOS = {"discovery", "jwks", "client_credentials", "userinfo"}
# Targets of issue 2 item 20 (2 cores, PostgreSQL, 32 connections); p99 < 50 ms and 0 errors for all.
TARGETS = {"discovery": 7000, "jwks": 7000, "client_credentials": 2300, "userinfo": None, "code_flow": 600,
           "password_login": 60}
UNITS = {"code_flow": "flows/s", "password_login": "logins/s", "client_credentials": "tokens/s"}
WRK_HINT = "wrk is not installed: `apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`; using bench/loadgen.py"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--duration", type=float, default=20, help="seconds of measured load per scenario (default 20)")
    p.add_argument("--warmup", type=float, default=3, help="seconds of unmeasured load before each (default 3)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    p.add_argument("--server", choices=["granian", "gunicorn"], default=None,
                   help="production server for `idp serve --server` (default: idp serve's default)")
    p.add_argument("--workers", type=int, default=None, help="idp serve --workers (default: its default)")
    p.add_argument("--threads", type=int, default=None, help="idp serve --threads (default: its default)")
    p.add_argument("--no-access-log", action="store_true", help="pass --no-access-log to idp serve")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of: " + ", ".join(SCENARIOS))
    p.add_argument("--paced", choices=["on", "off"], default="on",
                   help="also run code_flow and password_login at their target rate (open loop) (default on)")
    p.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto",
                   help="single-request scenarios: wrk (auto when installed) or the Python generator")
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="PostgreSQL maintenance database (loopback) used to create and drop the benchmark database")
    p.add_argument("--alg", choices=["RS256", "ES256"], default="RS256", help="IDP_KEYS_ALG (default RS256)")
    p.add_argument("--users", type=int, default=None, help="signed-in users (default: = connections, at most 64)")
    p.add_argument("--sqlite-wal", action="store_true",
                   help="experiment: switch the SQLite file to WAL journal mode after migrating (not idp's default)")
    p.add_argument("--note", default="", help="free text recorded with the results (e.g. 'machine busy')")
    p.add_argument("--output", default=str(BENCH / "results.md"))
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="sample the server with py-spy during each scenario into DIR (pip install py-spy)")
    p.add_argument("--keep-logs", action="store_true", help="print the server log path and keep it")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.duration <= 0 or args.duration > 600 or args.connections < 1 or args.connections > 1024:
        p.error("--duration must be in (0, 600] and --connections in [1, 1024]")
    args.users = args.users or min(args.connections, 64)
    return args


# --- the machine --------------------------------------------------------------------------------
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def background_busy(seconds: float = 2.0) -> float:
    """Share of all CPUs busy while this benchmark is idle (other jobs on the machine), 0..1."""
    try:
        b0, t0 = cpu_times()
        time.sleep(seconds)
        b1, t1 = cpu_times()
    except OSError:
        return float("nan")
    return (b1 - b0) / (t1 - t0) if t1 > t0 else float("nan")


def calibrate() -> dict:
    """CPU ms of three fixed pieces of work, to compare machines (and to see a disturbed one)."""
    from argon2 import PasswordHasher
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    def cpu_ms(fn, n):
        start = time.process_time()
        for _ in range(n):
            fn()
        return 1000 * (time.process_time() - start) / n

    key = rsa.generate_private_key(65537, 2048)
    hasher = PasswordHasher(memory_cost=19456, time_cost=2, parallelism=1)  # idp's defaults
    stored = hasher.hash("calibration")
    return {"rsa2048_sign_ms": cpu_ms(lambda: key.sign(b"x" * 400, padding.PKCS1v15(), hashes.SHA256()), 100),
            "argon2_verify_ms": cpu_ms(lambda: hasher.verify(stored, "calibration"), 5),
            "python_loop_ms": cpu_ms(lambda: sum(i for i in range(100_000)), 20)}


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("flask", "authlib", "sqlalchemy", "psycopg", "granian", "gunicorn", "cryptography", "joserfc"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version
            out[name] = version(name)
    return out


# --- database, seed, server -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def fresh_database(kind: str, args, workdir: Path):
    """Yield the IDP_DATABASE_URL of a new, empty database; drop it afterwards (PostgreSQL)."""
    if kind == "sqlite":
        yield ""  # idp's default: SQLite at $IDP_INSTANCE_PATH/idp.sqlite
        return
    import psycopg

    parts = urlsplit(args.pg_url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("--pg-url must point at a loopback PostgreSQL")
    name = f"idp_bench_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{args.pg_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def idp_env(database_url: str, instance: Path, port: int, args) -> dict:
    total = args.duration + args.warmup
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update({
        "IDP_ENV": "development",  # only because the issuer is plain http on loopback
        "IDP_ISSUER": f"http://{HOST}:{port}",
        "IDP_INSTANCE_PATH": str(instance),
        "IDP_DATABASE_URL": database_url,
        "IDP_SECRET_KEY": secrets.token_urlsafe(48),
        "IDP_KEYS_ALG": args.alg,
        # the access token taken from the code flow for the userinfo scenario must outlast the run
        "IDP_TOKEN_ACCESS_TTL": str(int(3600 + 4 * total * len(SCENARIOS))),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def run_checked(argv: list[str], env: dict, timeout: float = 180, stdin: str | None = None) -> str:
    done = subprocess.run(argv, env=env, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def serve_argv(port: int, args) -> list[str]:
    argv = [str(VENV_BIN / "idp"), "serve", "--host", HOST, "--port", str(port)]
    if args.server:
        argv += ["--server", args.server]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.no_access_log:
        argv += ["--no-access-log"]
    return argv


@contextlib.contextmanager
def running_server(argv: list[str], env: dict, log_path: Path):
    """Start `idp serve` in its own process group; stop that group (and only it) afterwards."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"idp serve exited with {proc.returncode}; see {log_path}:\n"
                                 + log_path.read_text(errors="replace")[-3000:])
            with contextlib.suppress(requests.RequestException):
                if requests.get(env["IDP_ISSUER"] + "/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise SystemExit(f"idp serve did not answer /healthz within 60 s; see {log_path}")
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def server_processes(root_pid: int) -> list[int]:
    """The server's process tree (master and workers), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def database_backends(db_name: str) -> list[int]:
    """PostgreSQL backend processes serving the benchmark database (same machine)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if cmdline.startswith(b"postgres: ") and f" {db_name} ".encode() in cmdline:
                    pids.append(int(entry.name))
    return pids


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds([pid]) for pid in pids}


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# --- a browser that signs in and consents once (setup, not measured) --------------------------------
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')
HIDDEN = 'name="{}"[^>]*value="([^"]+)"'


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    if not match:
        raise SystemExit("no csrf_token on the page")
    return match.group(1) or match.group(2)


def sign_in(issuer: str, login: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(f"{issuer}/login", timeout=10)
    posted = browser.post(f"{issuer}/login", data={"csrf_token": csrf_of(page.text), "login": login,
                                                  "password": PASSWORD, "next": "/account"},
                          allow_redirects=False, timeout=10)
    if posted.status_code != 303 or "idp_session" not in browser.cookies:
        raise SystemExit(f"signing in {login} failed: {posted.status_code}")
    return browser


def authorize_once(issuer: str, browser: requests.Session, seed: dict, consent: bool) -> dict:
    """One code flow by hand, consenting when asked; returns the token response."""
    verifier = secrets.token_urlsafe(48)
    import hashlib
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    query = {"response_type": "code", "client_id": seed["client_id"], "redirect_uri": seed["redirect_uri"],
             "scope": seed["scope"], "state": state, "nonce": nonce, "code_challenge": challenge,
             "code_challenge_method": "S256"}
    response = browser.get(f"{issuer}/authorize?" + urlencode(query), allow_redirects=False, timeout=10)
    if response.status_code == 200 and consent and 'name="pending_id"' in response.text:
        pending_id = re.search(HIDDEN.format("pending_id"), response.text).group(1)
        sid = re.search(HIDDEN.format("sid"), response.text).group(1)  # the form is tied to the session
        response = browser.post(f"{issuer}/authorize/consent", data={
            "csrf_token": csrf_of(response.text), "pending_id": pending_id, "sid": sid, "decision": "allow"},
            allow_redirects=False, timeout=10)
    location = response.headers.get("Location", "")
    if response.status_code != 302 or not location.startswith(seed["redirect_uri"]):
        raise SystemExit(f"authorization did not redirect to the client: {response.status_code} {location[:100]}")
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    if params.get("state") != state or params.get("iss") != issuer:
        raise SystemExit(f"authorization response lacks state or iss: {params}")
    tokens = requests.post(f"{issuer}/token", auth=(seed["client_id"], seed["client_secret"]), timeout=10, data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": seed["redirect_uri"],
        "code_verifier": verifier}).json()
    tokens["_nonce"] = nonce
    return tokens


def verify_jwt(issuer: str, token: str, audience: str, typ: str | None = None) -> dict:
    """Check a token's signature against the served JWKS (setup sanity, with authlib's joserfc)."""
    from joserfc import jwt
    from joserfc.jwk import KeySet

    keys = KeySet.import_key_set(requests.get(f"{issuer}/jwks", timeout=10).json())
    decoded = jwt.decode(token, keys, algorithms=["RS256", "ES256"])
    claims = decoded.claims
    aud = claims.get("aud")
    if claims.get("iss") != issuer or (audience not in aud if isinstance(aud, list) else aud != audience):
        raise SystemExit(f"token has the wrong iss or aud: {claims}")
    if typ and decoded.header.get("typ", "").lower() != typ:
        raise SystemExit(f"token typ is {decoded.header.get('typ')!r}, expected {typ!r}")
    return claims


def prepare_traffic(issuer: str, seed: dict) -> dict:
    """Sign every user in and consent once (so /authorize needs no interaction); check each scenario."""
    cookies = []
    tokens = None
    for i, login in enumerate(seed["users"]):
        browser = sign_in(issuer, login)
        got = authorize_once(issuer, browser, seed, consent=True)
        if "id_token" not in got:
            raise SystemExit(f"no ID token: {got}")
        if i == 0:
            claims = verify_jwt(issuer, got["id_token"], seed["client_id"])
            if claims.get("nonce") != got["_nonce"]:
                raise SystemExit("ID token nonce does not match")
            verify_jwt(issuer, got["access_token"], issuer, typ="at+jwt")  # RFC 9068 3: our default resource
            tokens = got
            # the remembered consent now covers the scopes: a second flow must not stop for consent
            authorize_once(issuer, browser, seed, consent=False)
        cookies.append(f"idp_session={browser.cookies['idp_session']}")
    basic = "Basic " + base64.b64encode(f"{seed['client_id']}:{seed['client_secret']}".encode()).decode()
    cc = requests.post(f"{issuer}/token", headers={"Authorization": basic}, timeout=10,
                       data={"grant_type": "client_credentials", "scope": "profile"})
    if cc.status_code != 200:
        raise SystemExit(f"client_credentials failed: {cc.status_code} {cc.text[:200]}")
    verify_jwt(issuer, cc.json()["access_token"], issuer, typ="at+jwt")
    info = requests.get(f"{issuer}/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]}, timeout=10)
    if info.status_code != 200 or "sub" not in info.json():
        raise SystemExit(f"userinfo failed: {info.status_code}")
    for path in ("/.well-known/openid-configuration", "/jwks"):
        if requests.get(issuer + path, timeout=10).status_code != 200:
            raise SystemExit(f"{path} does not answer 200")
    return {"session_cookies": cookies, "access_token": tokens["access_token"], "basic": basic}


# --- load ------------------------------------------------------------------------------------------
def scenario_request(name: str, traffic: dict) -> tuple[str, str, str, list[str]]:
    """(method, path, body, headers) of a single-request scenario."""
    if name == "discovery":
        return "GET", "/.well-known/openid-configuration", "", []
    if name == "jwks":
        return "GET", "/jwks", "", []
    if name == "client_credentials":
        return ("POST", "/token", "grant_type=client_credentials&scope=profile",
                [f"Authorization: {traffic['basic']}", "Content-Type: application/x-www-form-urlencoded"])
    if name == "userinfo":
        return "GET", "/userinfo", "", [f"Authorization: Bearer {traffic['access_token']}"]
    raise ValueError(name)


def run_wrk(name: str, port: int, traffic: dict, duration: float, args) -> dict:
    method, path, body, headers = scenario_request(name, traffic)
    argv = ["wrk", "-t", str(min(args.wrk_threads, args.connections)), "-c", str(args.connections),
            "-d", f"{max(1, round(duration))}s", "--timeout", "10s", "-s", str(BENCH / "wrk" / "request.lua"),
            f"http://{HOST}:{port}{path}", "--", method, path, body, *headers]
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, cwd=ROOT)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no result ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    r = json.loads(line[len("BENCH_JSON "):])
    seconds = r["duration_us"] / 1e6
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return {"flows": r["requests"], "errors": errors, "seconds": seconds, "rate": r["requests"] / seconds,
            "p50_ms": r["p50_us"] / 1000, "p90_ms": r["p90_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "max_ms": r["max_us"] / 1000, "tool": "wrk", "wall": time.monotonic() - started,
            "error_detail": {k: r[k] for k in ("connect", "read", "write", "status", "timeout") if r[k]}}


def run_loadgen(name: str, port: int, seed: dict, traffic: dict, duration: float, args, workdir: Path,
                rate: float | None = None) -> dict:
    method_path = None
    cfg = {"scenario": name, "port": port, "duration": duration, "connections": args.connections,
           "max_flows": int(duration * 20000) + 1000, "rate": rate, "issuer": f"http://{HOST}:{port}",
           "client_id": seed["client_id"], "redirect_uri": seed["redirect_uri"], "code_scope": seed["scope"],
           "cc_scope": "profile", "basic": traffic["basic"], "access_token": traffic["access_token"],
           "session_cookies": traffic["session_cookies"], "users": seed["users"], "password": PASSWORD,
           "browser_cookie": "idp_browser", "session_cookie": "idp_session"}
    if name in ("discovery", "jwks"):
        method_path = scenario_request(name, traffic)[1]
        cfg["path"] = method_path
    config_path = workdir / f"loadgen-{name}.json"
    config_path.write_text(json.dumps(cfg))
    started = time.monotonic()
    out = subprocess.run([sys.executable, str(BENCH / "loadgen.py"), str(config_path)], capture_output=True,
                         text=True, timeout=duration + 120, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"loadgen failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update({"tool": "loadgen", "wall": time.monotonic() - started})
    return result


def measure(name: str, kind: str, port: int, seed: dict, traffic: dict, args, workdir: Path, server_pid: int,
            use_wrk: bool, db_name: str | None, rate: float | None = None) -> dict:
    def once(duration):
        if use_wrk and name in WRK_SCENARIOS and rate is None:
            return run_wrk(name, port, traffic, duration, args)
        return run_loadgen(name, port, seed, traffic, duration, args, workdir, rate)

    if args.warmup > 0:
        once(args.warmup)
    pids = server_processes(server_pid)
    db0 = cpu_by_pid(database_backends(db_name)) if db_name else {}
    cpu0, busy0 = cpu_seconds(pids), cpu_times()
    profiler = start_profiler(pids, workdir, name, rate) if args.profile else None
    result = once(args.duration)
    cpu1, busy1 = cpu_seconds(pids), cpu_times()
    db1 = cpu_by_pid(database_backends(db_name)) if db_name else {}
    if profiler is not None:
        stop_profiler(profiler, args, kind, name, rate)
    seconds = result["seconds"]
    result.update({"scenario": name, "db": kind, "mode": f"paced {rate:g}/s" if rate else f"max, {args.connections} conns",
                   "server_cpu": (cpu1 - cpu0) / seconds,
                   "server_ms_per_flow": 1000 * (cpu1 - cpu0) / max(1, result["flows"]),
                   "db_cpu": sum(v - db0.get(pid, 0.0) for pid, v in db1.items()) / seconds,
                   "db_ms_per_flow": 1000 * sum(v - db0.get(pid, 0.0) for pid, v in db1.items()) / max(1, result["flows"]),
                   "machine_busy": (busy1[0] - busy0[0]) / (busy1[1] - busy0[1]) if busy1[1] > busy0[1] else float("nan")})
    print(f"  {name:<19} {result['mode']:<16} {result['rate']:>9.1f}/s  p50 {result['p50_ms']:7.2f} ms"
          f"  p99 {result['p99_ms']:7.2f} ms  errors {result['errors']}  (server {result['server_cpu']:.2f} cores,"
          f" {result['server_ms_per_flow']:.2f} ms CPU/flow; db {result['db_cpu']:.2f} cores;"
          f" machine {100 * result['machine_busy']:.0f}% busy)", flush=True)
    if result.get("error_samples") or result.get("error_detail"):
        print(f"    errors: {result.get('error_samples') or result.get('error_detail')}", flush=True)
    return result


def start_profiler(pids: list[int], workdir: Path, name: str, rate):
    """py-spy (installed by hand: .venv/bin/pip install py-spy) sampling every server process."""
    py_spy = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
    procs = []
    for pid in pids[1:] or pids:  # the workers (the first pid is the master)
        out = workdir / f"profile-{name}-{'paced' if rate else 'max'}-{pid}.txt"
        procs.append((subprocess.Popen([py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                                        "--nonblocking", "--output", str(out)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out))
    time.sleep(0.5)
    return procs


def stop_profiler(procs, args, kind: str, name: str, rate) -> None:
    target = Path(args.profile)
    target.mkdir(parents=True, exist_ok=True)
    merged = target / f"{kind}-{name}-{'paced' if rate else 'max'}.txt"
    for proc, _ in procs:
        proc.send_signal(signal.SIGINT)
    with open(merged, "w") as handle:
        for proc, out in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            if out.exists():
                handle.write(out.read_text())
    print(f"    profile: {merged} (collapsed stacks; bench/profile_summary.py {merged})", flush=True)


def bench_database(kind: str, args, use_wrk: bool) -> tuple[list[dict], dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix=f"idp-bench-{kind}-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        idle = background_busy()
        calibration = calibrate()
        with fresh_database(kind, args, workdir) as database_url:
            env = idp_env(database_url, workdir / "instance", port, args)
            run_checked([str(VENV_BIN / "idp"), "db", "upgrade"], env)
            if kind == "sqlite" and args.sqlite_wal:
                import sqlite3
                with contextlib.closing(sqlite3.connect(workdir / "instance" / "idp.sqlite")) as conn:
                    conn.execute("PRAGMA journal_mode=WAL")  # persists in the file
            seed = json.loads(run_checked([sys.executable, str(BENCH / "seed.py"), str(args.users), PASSWORD], env)
                              .strip().splitlines()[-1])
            argv = serve_argv(port, args)
            log_path = workdir / "server.log"
            print(f"[{kind}] {' '.join(shlex.quote(a) for a in argv)}  (background CPU before start: "
                  f"{100 * idle:.0f}% of {os.cpu_count()} CPUs)", flush=True)
            with running_server(argv, env, log_path) as proc:
                traffic = prepare_traffic(env["IDP_ISSUER"], seed)
                server_line = describe_server(proc.pid, log_path)
                db_name = database_url.rsplit("/", 1)[1] if database_url else None
                for name in args.scenarios:
                    results.append(measure(name, kind, port, seed, traffic, args, workdir, proc.pid, use_wrk, db_name))
                    if args.paced == "on" and name in ("code_flow", "password_login"):
                        results.append(measure(name, kind, port, seed, traffic, args, workdir, proc.pid, use_wrk,
                                               db_name, rate=TARGETS[name]))
            if args.keep_logs:
                kept = Path(tempfile.gettempdir()) / f"idp-bench-{kind}-server.log"
                shutil.copy(log_path, kept)
                print(f"  server log: {kept}")
    return results, {"db": kind, "background_busy": idle, "server": server_line, "argv": argv,
                     "calibration": calibration}


def describe_server(pid: int, log_path: Path) -> str:
    pids = server_processes(pid)
    cmdlines = []
    for p in pids:
        with contextlib.suppress(OSError):
            cmdlines.append(Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
    main_cmd = next((c for c in cmdlines if "granian" in c or "gunicorn" in c), cmdlines[0] if cmdlines else "?")
    return f"{main_cmd}  ({len(pids)} processes)"


# --- the report ------------------------------------------------------------------------------------
def fmt_rate(r: dict) -> str:
    return f"{r['rate']:,.0f}" if r["rate"] >= 100 else f"{r['rate']:,.1f}"


def verdict(r: dict) -> str:
    target = TARGETS.get(r["scenario"])
    if target is None:
        return "-"
    ok = r["rate"] >= target * 0.98 and r["p99_ms"] < 50 and r["errors"] == 0
    if r["mode"].startswith("max") and r["scenario"] in ("code_flow", "password_login"):
        ok = r["rate"] >= target and r["errors"] == 0  # p99 here is queueing of 32 closed-loop conns
    return f"{target:,} {'met' if ok else 'MISSED'}"


def report(results: list[dict], runs: list[dict], args, command: str, use_wrk: bool) -> str:
    lines = ["# Benchmark results", "",
             f"Command: `{command}`  ",
             f"Taken: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}  ",
             f"Machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, {platform.system()} {platform.release()}  ",
             f"Versions: {', '.join(f'{k} {v}' for k, v in versions().items())}  ",
             f"Load generators: {'wrk ' + str(args.wrk_threads) + ' threads' if use_wrk else 'bench/loadgen.py'}"
             f" for discovery, jwks, client_credentials, userinfo; bench/loadgen.py (asyncio) for code_flow and "
             f"password_login; {args.connections} connections, {args.duration:g} s each after {args.warmup:g} s warm-up; "
             f"signing alg {args.alg}  "]
    for run in runs:
        cal = run["calibration"]
        lines.append(f"Server ({run['db']}): `{run['server']}`; other jobs kept "
                     f"{100 * run['background_busy']:.0f}% of the CPUs busy just before the run; calibration (CPU ms): "
                     f"RSA-2048 sign {cal['rsa2048_sign_ms']:.2f}, argon2id verify (19 MiB, t=2) "
                     f"{cal['argon2_verify_ms']:.1f}, Python loop {cal['python_loop_ms']:.2f}  ")
    if args.note:
        lines.append(f"Note: {args.note}  ")
    lines += ["", "| scenario | database | load | req/s | p50 ms | p99 ms | errors | target req/s (p99 < 50 ms, 0 errors) "
              "| CPU ms per flow (server + db) |",
              "|---|---|---|---:|---:|---:|---:|---|---:|"]
    for r in results:
        unit = UNITS.get(r["scenario"], "")
        lines.append(f"| {r['scenario']} | {r['db']} | {r['mode']} | {fmt_rate(r)}{' ' + unit if unit else ''} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {verdict(r)} | "
                     f"{r['server_ms_per_flow']:.2f} + {r['db_ms_per_flow']:.2f} |")
    lines += ["", "req/s counts whole flows for code_flow (GET /authorize + POST /token) and password_login "
              "(GET /login + POST /login), and their latencies are per flow. \"max\" rows are closed-loop "
              "(each connection sends its next request when the last one is answered); \"paced\" rows send "
              "flows at the target rate (open loop, latency from the scheduled start).", ""]
    lines += ["CPU ms per flow is CPU time of the server processes (and of the PostgreSQL backends serving the "
              "benchmark database) divided by completed flows: it holds up on a busy machine better than req/s. "
              "Cores used and the whole machine's busy share per scenario:", ""]
    lines += [f"- {r['scenario']} / {r['db']} / {r['mode']}: server {r['server_cpu']:.2f} cores, machine "
              f"{100 * r['machine_busy']:.0f}% busy" + (f", load generator {r['loadgen_cpu_s'] / r['seconds']:.2f} cores"
                                                        if "loadgen_cpu_s" in r else "") for r in results]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk") is not None)
    if args.loadgen == "wrk" and shutil.which("wrk") is None:
        raise SystemExit(WRK_HINT.split(";")[0])
    if not use_wrk and args.loadgen == "auto":
        print(WRK_HINT, file=sys.stderr)
    inner = shlex.join(sys.argv[1:])
    quoted = f'"{inner}"' if not set(inner) & set('"$`\\') else shlex.quote(inner)
    command = "make bench" + (f" BENCH_ARGS={quoted}" if inner else "")
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results, runs = [], []
    for kind in kinds:
        got, run = bench_database(kind, args, use_wrk)
        results += got
        runs.append(run)
    text = report(results, runs, args, command, use_wrk)
    Path(args.output).write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
