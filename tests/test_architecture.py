"""DESIGN.md section 3 as a checked fact: import-linter's contracts in pyproject.toml hold."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def contracts() -> list[dict]:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["tool"]["importlinter"]["contracts"]


def layer_modules() -> set[str]:
    layers = next(c for c in contracts() if c["type"] == "layers")["layers"]
    names = set()
    for layer in layers:
        for name in layer.replace("|", ":").split(":"):
            names.add(name.strip().strip("()"))
    return names


def test_import_linter_contracts_are_kept():
    result = subprocess.run([str(LINT_IMPORTS), "--config", "pyproject.toml", "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    kept = len(contracts())
    assert f"Contracts: {kept} kept, 0 broken." in result.stdout, result.stdout


def test_every_room_is_placed_in_a_layer():
    """A new room cannot slip past the contract: each module or package under idp/ has a layer."""
    rooms = {f"idp.{p.stem}" for p in (ROOT / "idp").iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert rooms <= layer_modules(), f"rooms missing from the layers contract: {sorted(rooms - layer_modules())}"


def test_only_the_entry_points_import_create_app():
    """idp/__init__.py (create_app) is the top layer: only the CLI and the WSGI module import it."""
    graph = grimp.build_graph("idp", cache_dir=None)
    assert graph.find_modules_that_directly_import("idp") <= {"idp.cli", "idp.wsgi"}


def test_rooms_of_the_design_that_do_not_exist_yet_are_optional_layers():
    for room in ("idp.policy", "idp.federation", "idp.admin", "idp.scim", "idp.mail", "idp.outbox"):
        assert room in layer_modules(), room
