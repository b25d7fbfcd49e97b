"""Runs README code blocks that stand alone (issue 12 extends this to every block)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import mypy.api

import cascache.decorator
from cascache.aio import AsyncCAS
from model.servers import RedisServer

README = Path(__file__).resolve().parent.parent / "README.md"


def section_blocks(heading: str) -> list[str]:
    """The Python code blocks of the README section under ``heading``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    end = text.find("\n#", start + len(heading) + 2)
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


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
