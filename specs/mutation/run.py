"""The mutation runner: how many wrong protocols do the unit tests plus the model reject?

``python -m specs.mutation.run`` (from the repository root, in the venv with the
``mutation`` extra) does, in a scratch copy of the working tree (never in the tree itself):

1. **Python mutants** -- ``mutmut run`` over the modules in ``[tool.mutmut] only_mutate``
   against the unit tests and the focused, seeded model run (``model_check.py``), cheap
   tests first, stopping at the first failure (``plugin.py``).
2. **Confirm** -- every mutant that survived stage 1 runs the model again with a larger
   budget (``--confirm-rounds`` x ``--confirm-examples``, other seeds); a failure there
   counts as killed, and says the budget of stage 1 was what missed it.
3. **Lua mutants** -- each hand-written mutant of ``lua.py`` runs the Redis unit tests and
   the model, then the confirm budget if it survived.

It writes ``report.md`` and ``results.json`` into the scratch directory (and prints the
summary); specs/mutants.md is written from them by hand, with a classification of every
survivor.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from specs.mutation.classify import changed_lines, classify
from specs.mutation.lua import MUTANTS as LUA_MUTANTS
from specs.mutation.lua import check_all

ROOT = Path(__file__).resolve().parents[2]
MODEL_CHECK = "specs/mutation/model_check.py"
LUA_TESTS = [
    "tests/redis_backend/test_genstore.py",
    "tests/redis_backend/test_mutator.py",
    "tests/redis_backend/test_replication.py",
    "tests/test_cache.py",
    "specs/test_race.py",
    MODEL_CHECK,
]
COPIED = ("cascache", "model", "specs", "tests", "pyproject.toml", "README.md")
PROTOCOL = (
    "cascache/core.py",
    "cascache/batch.py",
    "cascache/genstore.py",
    "cascache/wire.py",
    "cascache/keys.py",
    "cascache/redis/mutator.py",
    "cascache/redis/genstore.py",
    "cascache/redis/scripts.py",
)
KILLED = {"killed", "timeout", "caught by type check", "segfault"}


@dataclass
class Mutant:
    """One mutant's verdict."""

    name: str
    status: str
    file: str = ""
    line: int = 0
    diff: str = ""
    stage: str = "tests+model"
    kind: str = ""


@dataclass
class Budget:
    """A model budget: rounds x examples per target."""

    rounds: int
    examples: int
    first_seed: int = 7_000

    def env(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        return {
            **os.environ,
            # mutmut's type_check_command runs ``python -m mypy`` from this venv.
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "CASCACHE_MUTATION_ROUNDS": str(self.rounds),
            "CASCACHE_MUTATION_EXAMPLES": str(self.examples),
            "CASCACHE_MUTATION_FIRST_SEED": str(self.first_seed),
        }


def snapshot(work: Path, rev: str | None) -> dict[str, str]:
    """Copy the tree into ``work``; return what the score was measured on.

    With ``rev``, the sources, model and tests are those of that commit, and only this
    runner (``specs/mutation``) and ``pyproject.toml`` come from the working tree: a
    reproducible measurement while others edit the tree.
    """
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    if rev is not None:
        archive = subprocess.run(
            ["git", "archive", rev, *COPIED], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
        overlay: tuple[str, ...] = ("specs/mutation", "pyproject.toml")
    else:
        overlay = COPIED
    for name in overlay:
        source, target = ROOT / name, work / name
        if source.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target)
    head = subprocess.run(
        ["git", "rev-parse", rev or "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    info = {"git_commit": head}
    if rev is None:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", *PROTOCOL],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        info["working_tree_changes"] = " ".join(dirty[1::2]) or "none"
    for name in PROTOCOL:
        info[name] = hashlib.sha256((work / name).read_bytes()).hexdigest()[:16]
    return info


def run_mutmut(work: Path, jobs: int, budget: Budget) -> float:
    """Stage 1; returns the seconds it took."""
    started = time.perf_counter()
    with (work / "mutmut.log").open("w") as log:
        subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs)],
            cwd=work,
            env=budget.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return time.perf_counter() - started


def mutmut_verdicts(work: Path) -> list[Mutant]:
    """Every Python mutant with its stage-1 status, read from mutmut's ``.meta`` files."""
    from mutmut.stats import status_by_exit_code

    found = []
    for meta in sorted((work / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        source = str(meta.relative_to(work / "mutants"))[: -len(".meta")]
        for name, code in data["exit_code_by_key"].items():
            found.append(Mutant(name, status_by_exit_code[code], file=source))
    return found


def locate(work: Path, mutants: list[Mutant]) -> None:
    """Fill in the diff and source line of each mutant (mutmut's own diff)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    here = Path.cwd()
    os.chdir(work)
    try:
        for mutant in mutants:
            mutant.diff = get_diff_for_mutant(mutant.name, path=mutant.file)
            mutant.line = _line_of(work / mutant.file, mutant)
            mutant.kind = classify(mutant.name, mutant.diff)
    finally:
        os.chdir(here)


def _line_of(path: Path, mutant: Mutant) -> int:
    """The line of the original source the mutant's first changed line comes from."""
    tail = mutant.name.rpartition(".")[2].rpartition("__mutmut_")[0]
    parts = tail[2:].split("ǁ") if tail.startswith("xǁ") else ["", tail[2:]]
    cls, func = parts[0], parts[-1]
    lines = path.read_text().splitlines()
    span = range(1, len(lines) + 1)
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.ClassDef) and cls and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == func:
                    span = range(item.lineno, (item.end_lineno or item.lineno) + 1)
        elif isinstance(node, ast.FunctionDef) and not cls and node.name == func:
            span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
    removed = changed_lines(mutant.diff)[0]
    for number in span:
        if removed and lines[number - 1].strip() == removed[0]:
            return number
    return span.start


def pytest_run(cwd: Path, tests: list[str], env: dict[str, str], timeout: float = 600) -> bool:
    """Run ``tests`` under the mutation plugin; whether they all passed.

    Any failure counts against the mutant, as in mutmut: a failing test (1), a crash
    during collection (2, 3) or a run past ``timeout`` seconds.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "specs.mutation.plugin", *tests],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False
    if done.returncode in (4, 5):
        raise RuntimeError(f"pytest found no tests to run in {cwd} for {tests}")
    return done.returncode == 0


def confirm(work: Path, survivors: list[Mutant], budget: Budget, jobs: int) -> None:
    """Stage 2: the larger model budget on every stage-1 survivor."""

    def one(mutant: Mutant) -> None:
        env = {**budget.env(), "MUTANT_UNDER_TEST": mutant.name}
        if not pytest_run(work / "mutants", [MODEL_CHECK], env):
            mutant.status, mutant.stage = "killed", "confirm"

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, survivors))


def run_lua(work: Path, first: Budget, second: Budget, jobs: int) -> list[Mutant]:
    """Stage 3: each hand-written Lua mutant, in a pytest process of its own."""
    check_all()

    def one(index: int) -> Mutant:
        mutant = LUA_MUTANTS[index]
        result = Mutant(
            f"lua.{mutant.name}",
            "survived",
            file="cascache/redis/scripts.py",
            diff=f"{mutant.script}: {mutant.old!r} -> {mutant.new!r}",
        )
        chosen = {"CASCACHE_LUA_MUTANT": mutant.name}
        if not pytest_run(work, LUA_TESTS, {**first.env(), **chosen}):
            result.status = "killed"
        elif second.rounds and not pytest_run(work, [MODEL_CHECK], {**second.env(), **chosen}):
            result.status, result.stage = "killed", "confirm"
        return result

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, range(len(LUA_MUTANTS))))


def summarise(mutants: list[Mutant]) -> dict[str, int]:
    """Counts by final status."""
    counts: dict[str, int] = {}
    for mutant in mutants:
        counts[mutant.status] = counts.get(mutant.status, 0) + 1
    return counts


def report(info: dict[str, str], python: list[Mutant], lua: list[Mutant]) -> str:
    """The run's numbers and the survivors, as Markdown."""
    out = ["# Mutation run", "", "| measured on | |", "|---|---|"]
    out += [f"| {key} | `{value}` |" for key, value in info.items()]
    for title, group in (("Python (mutmut)", python), ("Lua (hand-written)", lua)):
        counts = summarise(group)
        killed = sum(n for status, n in counts.items() if status in KILLED)
        confirmed = sum(1 for m in group if m.stage == "confirm")
        out += [
            "",
            f"## {title}",
            "",
            f"total {len(group)}, killed {killed} "
            f"(of which {confirmed} only by the confirm budget), by status: {counts}",
            "",
        ]
        out += ["| mutant | where | status | class | change |", "|---|---|---|---|---|"]
        for m in group:
            if m.status in KILLED:
                continue
            removed, added = changed_lines(m.diff)
            change = f"{' '.join(removed)} → {' '.join(added)}" if removed else m.diff
            change = " ".join(change.split()).replace("|", "\\|").replace("`", "'")
            short = m.name.rpartition(".")[2]
            out.append(f"| `{short}` | {m.file}:{m.line} | {m.status} | {m.kind} | `{change}` |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cascache-mutation"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--rev", help="measure this commit's sources, model and tests (default: the work tree)"
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--confirm-rounds", type=int, default=2, help="0 skips stage 2")
    parser.add_argument("--confirm-examples", type=int, default=100)
    parser.add_argument("--no-python", action="store_true", help="skip stages 1 and 2")
    parser.add_argument("--no-lua", action="store_true", help="skip stage 3")
    parser.add_argument(
        "--reuse", action="store_true", help="start from the mutmut run already in --workdir"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite report.md from results.json"
    )
    args = parser.parse_args(argv)
    work: Path = args.workdir.resolve()
    saved = work / "results.json"
    if args.report_only:
        data = json.loads(saved.read_text())
        every = [Mutant(**m) for m in data["mutants"]]
        for m in every:
            if m.status not in KILLED and not m.name.startswith("lua."):
                m.kind = classify(m.name, m.diff)
        python = [m for m in every if not m.name.startswith("lua.")]
        lua = [m for m in every if m.name.startswith("lua.")]
        (work / "report.md").write_text(report(data["info"], python, lua))
        return 0
    first = Budget(args.rounds, args.examples)
    second = Budget(args.confirm_rounds, args.confirm_examples, first_seed=8_000)
    started = time.perf_counter()
    info = json.loads(saved.read_text())["info"] if args.reuse else snapshot(work, args.rev)
    info["budget"] = f"{first.rounds}x{first.examples}, confirm {second.rounds}x{second.examples}"
    python = []
    if not args.no_python:
        if not args.reuse:
            info["mutmut_seconds"] = f"{run_mutmut(work, args.jobs, first):.0f}"
            saved.write_text(json.dumps({"info": info, "mutants": []}))
        python = mutmut_verdicts(work)
        if second.rounds > 0:
            confirm(work, [m for m in python if m.status == "survived"], second, args.jobs)
        locate(work, [m for m in python if m.status not in KILLED])
    lua = [] if args.no_lua else run_lua(work, first, second, args.jobs)
    info["seconds"] = f"{time.perf_counter() - started:.0f}"
    text = report(info, python, lua)
    (work / "report.md").write_text(text)
    saved.write_text(json.dumps({"info": info, "mutants": [asdict(m) for m in python + lua]}))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
