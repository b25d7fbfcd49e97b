"""What a user's type checker infers for the codecs, under mypy --strict and pyright strict.

The usage below has no annotation at any call site: ``JsonCodec()`` is a
``JsonCodec[JsonValue]``, ``JsonCodec(User | None)`` a ``JsonCodec[User | None]``, and the
``CAS`` built from each has the same type parameter. Each checker must accept it, and
must reject each line of the wrong usage (so the check is not vacuous).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import mypy.api

ROOT = Path(__file__).resolve().parent.parent

USAGE = """\
from dataclasses import dataclass
from typing import assert_type

import msgspec
import pydantic

import cascache
from cascache import JsonCodec, JsonValue
from cascache.msgspec import MsgspecCodec
from cascache.pydantic import PydanticCodec


@dataclass
class User:
    id: str
    name: str


class Point(msgspec.Struct):
    x: int


class Model(pydantic.BaseModel):
    id: int


def load_user() -> User | None:
    return None


assert_type(JsonCodec(), JsonCodec[JsonValue])
assert_type(JsonCodec(User), JsonCodec[User])
assert_type(JsonCodec(User | None), JsonCodec[User | None])
assert_type(JsonCodec(list[User]), JsonCodec[list[User]])
assert_type(JsonCodec(dict[str, int] | None), JsonCodec[dict[str, int] | None])

documents = cascache.new(
    cascache.Options(namespace="doc", provider=cascache.LocalStore(), codec=JsonCodec())
)
assert_type(documents, cascache.CAS[JsonValue])
document = documents.get_or_load("1", lambda: {"a": [1, 2.5, None, True, "x"]})
assert_type(document, JsonValue)

users = cascache.new(
    cascache.Options(namespace="user", provider=cascache.LocalStore(), codec=JsonCodec(User | None))
)
assert_type(users, cascache.CAS[User | None])
user = users.get_or_load("42", load_user)
assert_type(user, User | None)
hit = users.get("42")
if hit is not None and hit.value is not None:
    print(hit.value.name)

# A wider annotation still checks (the plain codec's values are objects too).
anything: JsonCodec[object] = JsonCodec()

assert_type(MsgspecCodec(Point), MsgspecCodec[Point])
assert_type(MsgspecCodec(Point | None, format="msgpack"), MsgspecCodec[Point | None])
points = cascache.new(
    cascache.Options(namespace="pt", provider=cascache.LocalStore(), codec=MsgspecCodec(Point))
)
assert_type(points, cascache.CAS[Point])

assert_type(PydanticCodec(Model), PydanticCodec[Model])
assert_type(PydanticCodec(Model | None), PydanticCodec[Model | None])
models = cascache.new(
    cascache.Options(
        namespace="m", provider=cascache.LocalStore(), codec=PydanticCodec(Model | None)
    )
)
assert_type(models, cascache.CAS[Model | None])
"""

# Each line is wrong on its own; both checkers must report every one of them.
WRONG = [
    "users.get_or_load('1', lambda: 5)",
    "name: str = users.get_or_load('42', load_user).name",
    "count: int = documents.get_or_load('1', lambda: 1)",
    "assert_type(JsonCodec(User | None), JsonCodec[User])",
    "JsonCodec(User).encode(None)",
    "MsgspecCodec(Point, format='yaml')",
    "point: str = MsgspecCodec(Point).decode(b'')",
    "PydanticCodec(Model).encode(User('1', 'a'))",
]


def wrong_usage() -> tuple[str, list[int]]:
    """The usage followed by the wrong lines, and the (1-based) line of each."""
    base = USAGE.count("\n")
    lines = [base + 1 + i for i in range(len(WRONG))]
    return USAGE + "\n".join(WRONG) + "\n", lines


def test_the_codecs_type_check_under_mypy_strict() -> None:
    report, _, status = mypy.api.run(["--strict", "--no-incremental", "-c", USAGE])
    assert status == 0, report


def test_mypy_strict_reports_every_wrong_use() -> None:
    source, lines = wrong_usage()
    report, _, status = mypy.api.run(["--strict", "--no-incremental", "-c", source])
    assert status == 1, report
    reported = {int(n) for n in re.findall(r"^<string>:(\d+): error", report, flags=re.M)}
    assert reported == set(lines), report


def run_pyright(tmp_path: Path, source: str) -> dict[str, object]:
    # pyright (its wheel bundles the checker; it runs on the machine's Node.js) in strict
    # mode, the checkout on its search path, as tests/test_readme.py runs it.
    (tmp_path / "usage.py").write_text(source, encoding="utf-8")
    config = {"extraPaths": [str(ROOT)], "typeCheckingMode": "strict"}
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config), encoding="utf-8")
    pyright = Path(sys.executable).with_name("pyright")
    done = subprocess.run(
        [str(pyright), "--pythonpath", sys.executable, "--outputjson", "usage.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result: dict[str, object] = json.loads(done.stdout)
    result["returncode"] = done.returncode
    return result


def test_the_codecs_type_check_under_pyright_strict(tmp_path: Path) -> None:
    result = run_pyright(tmp_path, USAGE)
    assert result["returncode"] == 0, result["generalDiagnostics"]
    summary = result["summary"]
    assert isinstance(summary, dict)
    assert summary["filesAnalyzed"] == 1 and summary["errorCount"] == 0


def test_pyright_strict_reports_every_wrong_use(tmp_path: Path) -> None:
    source, lines = wrong_usage()
    result = run_pyright(tmp_path, source)
    assert result["returncode"] == 1
    diagnostics = result["generalDiagnostics"]
    assert isinstance(diagnostics, list)
    reported = {d["range"]["start"]["line"] + 1 for d in diagnostics if d["severity"] == "error"}
    assert reported == set(lines), diagnostics
