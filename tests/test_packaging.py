"""The wheel: it carries templates, static files and migrations inside the package, every module
under idp/, and the `idp` command; installed on its own, the app finds its pages and its schema.

Slow-ish (one wheel build, about 10 s): the build runs on a copy of the tree, so the checkout gets
no build/ or egg-info of it."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREE = ("pyproject.toml", "README.md", "idp", "templates", "static", "migrations")


def _setuptools_supports_the_project() -> bool:
    """pyproject.toml uses a PEP 639 licence string, which setuptools understands from 77 on."""
    try:
        return int(version("setuptools").split(".")[0]) >= 77
    except Exception:  # noqa: BLE001 - setuptools missing or oddly versioned: build in isolation
        return False


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in TREE:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)]
    if _setuptools_supports_the_project():
        command.insert(4, "--no-build-isolation")
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=source)
    assert result.returncode == 0, result.stdout + result.stderr
    [built] = out.glob("idp-*.whl")
    return built


@pytest.fixture(scope="module")
def names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_holds_templates_static_files_and_migrations(names):
    assert {"idp/templates/base.html", "idp/templates/errors/500.html", "idp/static/css/idp.css",
            "idp/migrations/env.py", "idp/migrations/alembic.ini", "idp/migrations/script.py.mako"} <= names


@pytest.mark.parametrize("folder, prefix", [("templates", "idp/templates/"), ("static", "idp/static/"),
                                            ("migrations/versions", "idp/migrations/versions/")])
def test_wheel_holds_every_file_of_the_asset_folders(names, folder, prefix):
    files = {prefix + p.relative_to(ROOT / folder).as_posix()
             for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert files and files <= names, sorted(files - names)


def test_wheel_holds_every_module_under_idp(names):
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "idp").rglob("*.py") if "__pycache__" not in p.parts}
    missing = modules - names
    assert not missing, f"add the package to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_wheel_installs_the_idp_command(wheel):
    with zipfile.ZipFile(wheel) as archive:
        entry_points = next(n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
        assert "idp = idp.cli:main" in archive.read(entry_points).decode()


def test_installed_wheel_serves_pages_and_migrates_from_the_package(wheel, tmp_path):
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                              "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stdout + install.stderr
    script = textwrap.dedent(f"""
        import idp
        from pathlib import Path
        assert Path(idp.__file__).is_relative_to({str(target)!r}), idp.__file__
        from flask_migrate import upgrade
        from sqlalchemy import inspect
        from idp.extensions import db
        app = idp.create_app()
        assert app.template_folder.startswith({str(target)!r}), app.template_folder
        assert app.static_folder.startswith({str(target)!r}), app.static_folder
        with app.app_context():
            upgrade()
            assert "users" in inspect(db.engine).get_table_names()
        web = app.test_client()
        assert web.get("/login", base_url="http://127.0.0.1:5000").status_code == 200
        assert web.get("/static/css/idp.css", base_url="http://127.0.0.1:5000").status_code == 200
        print("installed wheel ok")
    """)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "IDP_ENV": "development",
           "IDP_INSTANCE_PATH": str(tmp_path / "instance"), "IDP_LOG_LEVEL": "WARNING"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env=env)
    assert result.returncode == 0 and "installed wheel ok" in result.stdout, result.stdout + result.stderr
