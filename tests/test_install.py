"""The README's installs, each in a clean environment, seen from a user's project.

The wheel is built the way the README builds it (``pip wheel --no-deps``, an isolated
build, which fetches setuptools from the index) from a copy of what the build reads, so
the checkout's own ``build/`` (where an editable install keeps its link tree) is never
touched. Every environment is a fresh venv without system site-packages; the user's
project is a directory of its own, and the type checkers are this session's mypy and
pyright pointed at that environment's interpreter, as a user's editor or CI would be.
``PYTHONPATH`` is dropped for every command, so nothing reaches the checkout by accident.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Sequence
from email.parser import HeaderParser
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent
README = CHECKOUT / "README.md"
BUILD_INPUTS = ("pyproject.toml", "setup.cfg", "README.md", "cascache", "model")
"""What building the distribution reads (``model/`` ships as ``cascache_audit``)."""
TIMEOUT = 120
"""Seconds any one command may take (the whole module takes 30 to 60 s here, on 2 cores)."""

USER_CODE = """\
import cascache

cache = cascache.new(
    cascache.Options(namespace="n", provider=cascache.LocalStore(), codec=cascache.StrCodec())
)
reveal_type(cache)
length: int = cache.get_or_load("k", lambda: "v")  # wrong on purpose: the value is a str
"""
"""A user's module: the revealed type and the one error prove the checker sees the API."""


def run(args: Sequence[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def ok(args: Sequence[str | Path], cwd: Path) -> str:
    done = run(args, cwd)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_env(path: Path) -> Path:
    """A new venv (no system site-packages, no pip of its own: this session's pip installs
    into it with ``--python``); returns its interpreter."""
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(path)
    return path / "bin" / "python"


def pip(python: Path, *args: str | Path, cwd: Path) -> str:
    return ok([sys.executable, "-m", "pip", "--python", python, *args], cwd)


def site_packages(python: Path, cwd: Path) -> Path:
    return Path(
        ok([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd).strip()
    )


def where(python: Path, module: str, cwd: Path) -> Path:
    """The real path of the file ``module`` is loaded from, found without importing it."""
    spec = f"importlib.util.find_spec({module!r})"
    code = f"import importlib.util, os; print(os.path.realpath({spec}.origin))"
    return Path(ok([python, "-c", code], cwd).strip())


def assert_types_seen(python: Path, project: Path) -> None:
    """mypy and pyright, run in ``project`` against ``python``'s environment, see cascache."""
    project.mkdir()
    (project / "app.py").write_text(USER_CODE, encoding="utf-8")
    mypy = run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-executable",
            python,
            "app.py",
        ],
        project,
    )
    assert 'Revealed type is "cascache.cache.CAS[str]"' in mypy.stdout, mypy.stdout
    assert mypy.stdout.count("error:") == 1, mypy.stdout
    assert "Incompatible types in assignment" in mypy.stdout, mypy.stdout
    pyright = run(
        [
            Path(sys.executable).with_name("pyright"),
            "--pythonpath",
            python,
            "--outputjson",
            "app.py",
        ],
        project,
    )
    report = json.loads(pyright.stdout)
    messages = [(d["severity"], d["message"]) for d in report["generalDiagnostics"]]
    assert ("information", 'Type of "cache" is "CAS[str]"') in messages, messages
    errors = [m for severity, m in messages if severity == "error"]
    assert len(errors) == 1 and '"str" is not assignable to "int"' in errors[0], messages


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the build's inputs, outside the checkout."""
    root = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in BUILD_INPUTS:
        path = CHECKOUT / name
        if path.is_dir():
            shutil.copytree(path, root / name, ignore=ignore)
        else:
            shutil.copy2(path, root / name)
    return root


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built by the README's command."""
    dist = tmp_path_factory.mktemp("dist")
    ok([sys.executable, "-m", "pip", "wheel", "--no-deps", ".", "-w", dist], source)
    (built,) = dist.glob("cascache-*.whl")
    return built


def modules(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.py")}


def test_the_wheel_ships_both_typed_packages_and_nothing_else(source: Path, wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_name,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(archive.read(metadata_name).decode())
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"cascache", "cascache_audit", metadata_name.split("/", 1)[0]}
    library = {n.removeprefix("cascache/") for n in names if n.startswith("cascache/")}
    audit = {n.removeprefix("cascache_audit/") for n in names if n.startswith("cascache_audit/")}
    # Every module of the checkout ships (a new subpackage must be listed in pyproject.toml).
    assert library == modules(source / "cascache") | {"py.typed"}
    assert audit == modules(source / "model")
    requirements = metadata.get_all("Requires-Dist", [])
    assert all("extra ==" in r for r in requirements), "the library itself depends on nothing"
    assert {"redis", "fast", "audit", "test"} <= set(metadata.get_all("Provides-Extra", []))


def test_the_readme_shows_these_installs(wheel: Path) -> None:
    text = README.read_text(encoding="utf-8")
    install = text[text.index("\n## Install\n") : text.index("\n## Quick start\n")]
    for command in (
        "$ python -m pip install '.[redis]'",  # the same build as the wheel's, then installed
        "$ python -m pip install '.[redis,fast]'",  # the fast extra exists (checked above)
        "$ python -m pip wheel --no-deps . -w dist",
        f"$ python -m pip install 'dist/{wheel.name}[redis]'",  # the version is current
    ):
        assert command in install, command
    # The two commands' editable installs (what the last test here does, extras aside).
    assert "pip install -e '.[test]'" in text and "pip install -e '.[audit]'" in text


def test_the_installed_wheel_is_seen_by_a_users_type_checkers(wheel: Path, tmp_path: Path) -> None:
    # README: pip install 'dist/cascache-0.1.0-py3-none-any.whl[redis]'
    python = clean_env(tmp_path / "env")
    pip(python, "install", f"{wheel}[redis]", cwd=tmp_path)
    packages = site_packages(python, tmp_path)
    assert where(python, "cascache", tmp_path) == packages / "cascache" / "__init__.py"
    assert (packages / "cascache" / "py.typed").is_file()
    assert where(python, "cascache_audit", tmp_path) == packages / "cascache_audit" / "__init__.py"
    code = "import cascache.redis, redis; print(cascache.redis.new.__module__)"
    assert ok([python, "-c", code], tmp_path).strip() == "cascache.redis"
    assert_types_seen(python, tmp_path / "project")


def test_the_editable_install_is_seen_by_a_users_type_checkers(
    source: Path, tmp_path: Path
) -> None:
    # README, the two commands: pip install -e '.[test]' (the extras add dependencies only).
    python = clean_env(tmp_path / "env")
    pip(python, "install", "--no-deps", "-e", ".", cwd=source)
    # Both packages resolve to the checkout's own files (through setup.cfg's strict link
    # tree, a plain path in a .pth file: no import hook a type checker would not run).
    assert where(python, "cascache", tmp_path) == source.resolve() / "cascache" / "__init__.py"
    assert (
        where(python, "cascache_audit.audit", tmp_path) == source.resolve() / "model" / "audit.py"
    )
    assert_types_seen(python, tmp_path / "project")
