"""Runs README code blocks that stand alone (issue 12 extends this to every block)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

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
