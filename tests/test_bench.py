"""The benchmark's in-process cost script still runs (bench/README.md): it drives the real flows
(login, consent, code flow, client_credentials, userinfo) and broke once unnoticed when the
consent form changed. A smoke run with few repetitions; the numbers are not checked here
(performance is measured by `make bench`, never asserted in the suite)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_costs_runs_every_scenario_on_sqlite():
    done = subprocess.run([sys.executable, "bench/costs.py", "--db", "sqlite", "--n", "30"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for scenario in ("client_credentials", "userinfo", "code_flow", "password_login"):
        assert any(line.startswith(scenario) for line in done.stdout.splitlines()), done.stdout
