"""Hand-written mutants of the Lua scripts in ``cascache/redis/scripts.py``.

No Python mutation tool reaches Lua inside a string constant, so each mutant here is one
textual edit of one script: ``old`` must occur exactly once in the script's source and is
replaced by ``new``. :func:`apply` installs a mutant into the imported module (the
``*_SOURCE`` constant and the shared :class:`~cascache.redis.scripts.LuaScript` object,
whose ``sha`` is recomputed), so every caller runs the mutated script. The runner applies
one mutant per pytest process through ``CASCACHE_LUA_MUTANT`` (see ``plugin.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

ENV = "CASCACHE_LUA_MUTANT"
"""The environment variable naming the Lua mutant a pytest process runs under."""


@dataclass(frozen=True)
class LuaMutant:
    """One textual edit of one script."""

    name: str
    script: str
    old: str
    new: str
    why: str


SNAP, WRITE, INVAL = "SNAPSHOT", "WRITE_IF_VERSION", "INVALIDATE"

MUTANTS: tuple[LuaMutant, ...] = (
    # -- snapshot: GET-or-create ------------------------------------------------------------
    LuaMutant(
        "snapshot-always-creates",
        SNAP,
        "if type(current) == 'string' and #current == #ARGV[1] then\n  return current\nend\n",
        "",
        "every snapshot installs a fresh fence (an invalidate in disguise)",
    ),
    LuaMutant(
        "snapshot-keeps-malformed-fence",
        SNAP,
        "if type(current) == 'string' and #current == #ARGV[1] then",
        "if current then",
        "a version key holding other bytes is handed out as a fence and never heals",
    ),
    LuaMutant(
        "snapshot-fails-on-wrong-type",
        SNAP,
        "local current = redis.pcall('GET', KEYS[1])",
        "local current = redis.call('GET', KEYS[1])",
        "a version key of another type fails every snapshot, so the key never fills again",
    ),
    LuaMutant(
        "snapshot-returns-new-fence",
        SNAP,
        "  return current\n",
        "  return ARGV[1]\n",
        "an existing fence is kept but the caller is handed the unused fresh one",
    ),
    LuaMutant(
        "snapshot-creates-without-storing",
        SNAP,
        "if ARGV[2] ~= '0' then\n  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
        "else\n  redis.call('SET', KEYS[1], ARGV[1])\nend\n",
        "",
        "a missing fence is handed out but never stored",
    ),
    LuaMutant(
        "snapshot-ttl-ignored",
        SNAP,
        "if ARGV[2] ~= '0' then",
        "if false then",
        "version_ttl is not applied to a created fence",
    ),
    LuaMutant(
        "snapshot-ttl-flipped",
        SNAP,
        "if ARGV[2] ~= '0' then",
        "if ARGV[2] == '0' then",
        "the TTL branch is taken exactly when there is no TTL",
    ),
    # -- write_if_version: compare, store, renew ----------------------------------------------
    LuaMutant(
        "write-no-compare",
        WRITE,
        "if current ~= ARGV[1] then\n  return 0\nend\n",
        "",
        "bug zoo 12 in Lua: the frame is stored whatever the fence",
    ),
    LuaMutant(
        "write-compare-flipped",
        WRITE,
        "if current ~= ARGV[1] then",
        "if current == ARGV[1] then",
        "stores exactly when the fence differs",
    ),
    LuaMutant(
        "write-creates-missing-fence",
        WRITE,
        "if current ~= ARGV[1] then",
        "if not current then\n  redis.call('SET', KEYS[2], ARGV[1])\n"
        "elseif current ~= ARGV[1] then",
        "bug zoo 4: a missing version key is created from the expected fence",
    ),
    LuaMutant(
        "write-accepts-missing-fence",
        WRITE,
        "if current ~= ARGV[1] then",
        "if current and current ~= ARGV[1] then",
        "a missing version key counts as a match (bug zoo 8 in Lua)",
    ),
    LuaMutant(
        "write-reads-value-key",
        WRITE,
        "local current = redis.pcall('GET', KEYS[2])",
        "local current = redis.pcall('GET', KEYS[1])",
        "compares against the value key instead of the version key",
    ),
    LuaMutant(
        "write-fails-on-wrong-type",
        WRITE,
        "local current = redis.pcall('GET', KEYS[2])",
        "local current = redis.call('GET', KEYS[2])",
        "a version key of another type makes the write raise instead of refusing",
    ),
    LuaMutant(
        "write-stores-into-version-key",
        WRITE,
        "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])\nelse\n"
        "  redis.call('SET', KEYS[1], ARGV[2])",
        "redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])\nelse\n"
        "  redis.call('SET', KEYS[2], ARGV[2])",
        "the frame overwrites the fence",
    ),
    LuaMutant(
        "write-skips-store",
        WRITE,
        "if ARGV[3] ~= '0' then\n  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])\n"
        "else\n  redis.call('SET', KEYS[1], ARGV[2])\nend\n",
        "",
        "reports stored without storing",
    ),
    LuaMutant(
        "write-entry-ttl-ignored",
        WRITE,
        "if ARGV[3] ~= '0' then",
        "if false then",
        "entries never expire",
    ),
    LuaMutant(
        "write-version-ttl-not-renewed",
        WRITE,
        "if ARGV[4] ~= '0' then\n  redis.call('PEXPIRE', KEYS[2], ARGV[4])\nend\n",
        "",
        "a write does not renew the version key's TTL",
    ),
    LuaMutant(
        "write-version-ttl-uses-entry-ttl",
        WRITE,
        "redis.call('PEXPIRE', KEYS[2], ARGV[4])",
        "redis.call('PEXPIRE', KEYS[2], ARGV[3])",
        "the version key is renewed with the entry's TTL",
    ),
    LuaMutant(
        "write-reports-rejected",
        WRITE,
        "return 1\n",
        "return 0\n",
        "a stored write reports a fence mismatch",
    ),
    LuaMutant(
        "write-rejection-reports-stored",
        WRITE,
        "  return 0\n",
        "  return 1\n",
        "a rejected write reports stored (write contract)",
    ),
    # -- invalidate: advance, then delete -------------------------------------------------------
    LuaMutant(
        "invalidate-no-advance",
        INVAL,
        "if ARGV[2] ~= '0' then\n  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])\n"
        "else\n  redis.call('SET', KEYS[2], ARGV[1])\nend\n",
        "",
        "bug zoo 2 in Lua: deletes but does not advance",
    ),
    LuaMutant(
        "invalidate-no-delete",
        INVAL,
        "redis.call('DEL', KEYS[1])\n",
        "",
        "advances but leaves the entry (harmless to freshness: its stamp is stale)",
    ),
    LuaMutant(
        "invalidate-deletes-fence",
        INVAL,
        "redis.call('DEL', KEYS[1])\n",
        "redis.call('DEL', KEYS[2])\n",
        "deletes the fresh fence instead of the entry",
    ),
    LuaMutant(
        "invalidate-advance-only-with-ttl",
        INVAL,
        "else\n  redis.call('SET', KEYS[2], ARGV[1])\n",
        "else\n",
        "without version_ttl (the default) the fence is never advanced",
    ),
    LuaMutant(
        "invalidate-ttl-ignored",
        INVAL,
        "if ARGV[2] ~= '0' then",
        "if false then",
        "version_ttl is not applied to an advanced fence",
    ),
    LuaMutant(
        "invalidate-advance-into-value-key",
        INVAL,
        "redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])\nelse\n"
        "  redis.call('SET', KEYS[2], ARGV[1])",
        "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\nelse\n"
        "  redis.call('SET', KEYS[1], ARGV[1])",
        "the fresh fence is written to the value key (then deleted)",
    ),
    LuaMutant(
        "invalidate-reports-failure",
        INVAL,
        "return 1\n",
        "return 0\n",
        "a successful invalidate replies as if it had failed",
    ),
)

BY_NAME: dict[str, LuaMutant] = {mutant.name: mutant for mutant in MUTANTS}


def mutated_source(mutant: LuaMutant, source: str) -> str:
    """``source`` with the mutant's edit; the edit must match exactly once."""
    count = source.count(mutant.old)
    if count != 1:
        raise ValueError(f"Lua mutant {mutant.name}: {count} matches in {mutant.script}")
    return source.replace(mutant.old, mutant.new)


def apply(name: str) -> LuaMutant:
    """Install the Lua mutant ``name`` into the imported ``cascache.redis.scripts``."""
    from cascache.redis import scripts

    mutant = BY_NAME[name]
    script: scripts.LuaScript = getattr(scripts, mutant.script)
    source = mutated_source(mutant, script.source)
    setattr(scripts, f"{mutant.script}_SOURCE", source)
    script.source = source
    script.sha = hashlib.sha1(source.encode()).hexdigest()
    return mutant


def check_all() -> None:
    """Raise unless every mutant applies cleanly to the current scripts."""
    from cascache.redis import scripts

    for mutant in MUTANTS:
        script: scripts.LuaScript = getattr(scripts, mutant.script)
        if mutated_source(mutant, script.source) == script.source:
            raise ValueError(f"Lua mutant {mutant.name} changes nothing")
