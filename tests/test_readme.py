"""Runs every Python code block of the README, and type-checks the asyncio ones.

The README's convention: each ```python block runs on its own, in a fresh namespace, unless
its first line is exactly ``# Continues the block above.``, in which case it runs in the
namespace of the block before it. A block that needs Redis connects with ``port=6380``;
the test substitutes the port of this session's own server (emptied before each block),
and refuses to run a block that makes a Redis client any other way.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import mypy.api
import pytest

import cascache.decorator
from cascache.aio import AsyncCAS
from model.servers import RedisServer

README = Path(__file__).resolve().parent.parent / "README.md"
CONTINUES = "# Continues the block above."
"""The first line of a block that runs in the namespace of the block before it."""
README_PORT = "port=6380"
"""How a block names the Redis server a reader would run."""


@dataclass(frozen=True)
class Block:
    """A ```python block of the README."""

    number: int  # its position among the README's Python blocks, from 0
    line: int  # the line of its opening fence
    heading: str  # the heading it is under
    code: str

    @property
    def continues(self) -> bool:
        return self.code.startswith(CONTINUES + "\n")


def python_blocks() -> list[Block]:
    """Every ```python block, with the heading above it (headings inside code are code)."""
    blocks: list[Block] = []
    heading, fence, start = "(top)", "", 0
    body: list[str] = []
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if fence:
            if line.strip() == "```":
                if fence == "python":
                    code = "".join(f"{text}\n" for text in body)
                    blocks.append(Block(len(blocks), start, heading, code))
                fence = ""
            else:
                body.append(line)
        elif line.startswith("```"):
            fence, start, body = line[3:].strip() or "text", number, []
        elif re.match(r"#{1,6} ", line):
            heading = line.lstrip("#").strip()
    assert not fence, f"README.md:{start}: a code block is never closed"
    return blocks


BLOCKS = python_blocks()


def section_blocks(heading: str) -> list[str]:
    """The Python code blocks of the README section under ``heading`` (``### asyncio``)."""
    return [block.code for block in BLOCKS if block.heading == heading.lstrip("#").strip()]


def test_the_asyncio_blocks_run_against_a_real_server(redis_server: RedisServer) -> None:
    service, in_process = section_blocks("### asyncio")
    # The block names the server a reader would run; this session's server stands in.
    assert "port=6380" in service
    service = service.replace("port=6380", f"port={redis_server.port}")
    namespace: dict[str, object] = {"__name__": "readme_asyncio"}
    exec(compile(service, "README.md (asyncio)", "exec"), namespace)
    users = namespace["users"]
    assert isinstance(users, AsyncCAS)
    assert users.core.closed  # main() ran to its end, and the lifespan closed the cache
    # The handlers, on the in-process cache of the second block.
    exec(compile(in_process, "README.md (asyncio, in process)", "exec"), namespace)
    users = namespace["users"]
    rename_user = namespace["rename_user"]
    get_user = namespace["get_user"]
    assert callable(rename_user) and callable(get_user)

    async def handlers() -> None:
        await rename_user("42", "Ada Byron")
        assert (await get_user("42"))["name"] == "Ada Byron"

    asyncio.run(handlers())


def test_the_asyncio_blocks_type_check_under_mypy_strict() -> None:
    # The typed usage example of the asyncio API: what a user's type checker sees.
    service, in_process = section_blocks("### asyncio")
    # The second block continues the first (it rebinds ``users`` for the same handlers).
    report, _, status = mypy.api.run(
        ["--strict", "--no-incremental", "-c", service + "\n" + in_process]
    )
    assert status == 0, report
    # Not vacuous: the checker reads the block, and sees the values' type through the API.
    wrong = service + "\n\nasync def wrong() -> int:\n    return await get_user('42')\n"
    report, _, status = mypy.api.run(["--strict", "--no-incremental", "-c", wrong])
    assert status == 1 and "Incompatible return value type" in report, report


def test_the_asyncio_blocks_type_check_under_pyright_strict(tmp_path: Path) -> None:
    # pyright (its wheel bundles the checker; it runs on the machine's Node.js) in strict
    # mode, each block as a file of its own, the checkout on its search path.
    blocks = section_blocks("### asyncio")
    files = []
    for i, block in enumerate(blocks):
        files.append(tmp_path / f"usage_{i}.py")
        files[-1].write_text(block, encoding="utf-8")
    (tmp_path / "wrong.py").write_text(
        blocks[0] + "\n\nasync def wrong() -> int:\n    return await get_user('42')\n",
        encoding="utf-8",
    )
    config = {"extraPaths": [str(README.parent)], "typeCheckingMode": "strict"}
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config), encoding="utf-8")
    pyright = Path(sys.executable).with_name("pyright")

    def check(*names: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(pyright), "--pythonpath", sys.executable, "--outputjson", *names],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    clean = check(*(f.name for f in files))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    summary = json.loads(clean.stdout)["summary"]
    assert summary["filesAnalyzed"] == len(files) and summary["errorCount"] == 0
    wrong = check("wrong.py")  # not vacuous: the wrong return type is seen
    assert wrong.returncode == 1 and "wrong.py" in wrong.stdout, wrong.stdout


def test_the_decorator_block_runs() -> None:
    (block,) = section_blocks("### Caching a function")
    namespace: dict[str, object] = {"__name__": "readme_decorator"}
    exec(compile(block, "README.md (decorator)", "exec"), namespace)
    user_name = namespace["user_name"]
    assert isinstance(user_name, cascache.decorator.Cached)
    assert user_name.key(42) == "readme_decorator.user_name(user_id=42)"


def block_ids(blocks: list[Block]) -> list[str]:
    """``<heading> <n>``: the n-th Python block under that heading."""
    ids: list[str] = []
    seen: dict[str, int] = {}
    for block in blocks:
        seen[block.heading] = seen.get(block.heading, 0) + 1
        ids.append(f"{block.heading} {seen[block.heading]}")
    return ids


def test_every_python_block_is_collected() -> None:
    # Every block is a case of test_the_block_runs, which fails unless it executed it.
    text = README.read_text(encoding="utf-8")
    # Counted independently of the parser: an opening fence anywhere, indented or not.
    assert len(BLOCKS) == len(re.findall(r"^\s*```python\b", text, flags=re.MULTILINE)) > 0
    # A Python block under another tag would be skipped silently: every one is ```python.
    assert not re.findall(r"^\s*```(?:py|python3|py3)\s*$", text, flags=re.MULTILINE)
    for block in BLOCKS:
        first = block.code.partition("\n")[0]
        assert first == CONTINUES or not first.lower().startswith("# continu"), (
            f"README.md:{block.line}: write the marker exactly: {CONTINUES}"
        )
    assert not BLOCKS[0].continues, "the first block has no block above it"
    assert [block.number for block in BLOCKS] == list(range(len(BLOCKS)))
    assert len(set(block_ids(BLOCKS))) == len(BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=block_ids(BLOCKS))
def test_the_block_runs(block: Block, request: pytest.FixtureRequest) -> None:
    chain = [block]
    while chain[0].continues:
        chain.insert(0, BLOCKS[chain[0].number - 1])
    # A block must never reach a server this test did not start (6379 is the system's):
    # every client it makes names the README's port, which is replaced by this server's.
    for part in chain:
        clients = len(re.findall(r"\bRedis(?:Cluster)?\(|\bfrom_url\(", part.code))
        assert clients <= part.code.count(README_PORT), (
            f"README.md:{part.line}: a Redis client without {README_PORT}"
        )
    port = README_PORT
    if any(README_PORT in part.code for part in chain):
        server: RedisServer = request.getfixturevalue("redis_server")
        request.getfixturevalue("real_redis")  # emptied: no block sees another's entries
        port = f"port={server.port}"
    name = f"readme_block_{block.number}"
    module = types.ModuleType(name)  # a real module, as a script's __main__ is
    sys.modules[name] = module
    executed = 0
    try:
        for part in chain:
            source = part.code.replace(README_PORT, port)
            filename = f"README.md:{part.line} ({part.heading})"
            exec(compile(source, filename, "exec"), module.__dict__)
            executed += 1
    finally:
        del sys.modules[name]
    assert executed == len(chain)
