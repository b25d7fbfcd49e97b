"""Encode + decode of one realistic database row, per codec, against ``JsonCodec``.

The row is what a PostgreSQL ``users`` row looks like in Python: a ``str`` and ``int``
primary data, an aware ``datetime``, a ``Decimal`` balance, a ``UUID``, an ``Enum``, a
``date | None``, a ``datetime | None`` and a list of tags. Each contender is one codec
doing ``decode(encode(row))`` per call; every codec must give back a row equal to the
original (checked before timing). The contenders alternate in blocks (``bench/_timing.py``),
GC paused; reported are the median and p90 per call, the encoded size, and the ratio of
each median to ``JsonCodec``'s (``speedup`` = JsonCodec / codec). Timing is reported,
never asserted.

    .venv/bin/python bench/codecs.py                  # Markdown table, ~10 s
    .venv/bin/python bench/codecs.py --iterations 2000 --json

Needs the ``msgspec`` and ``pydantic`` extras (both are in ``test``).
"""

from __future__ import annotations

import argparse
import enum
import json
import platform
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    # Run as ``python bench/codecs.py``: make ``cascache`` importable.
    sys.path.insert(0, str(REPO_ROOT))

import msgspec  # noqa: E402
import pydantic  # noqa: E402
from _timing import Contender, Stats, call_overhead_ns, measure  # noqa: E402

from cascache import Codec, JsonCodec  # noqa: E402
from cascache.msgspec import MsgspecCodec  # noqa: E402
from cascache.pydantic import PydanticCodec  # noqa: E402


class Plan(enum.Enum):
    FREE = "free"
    PRO = "pro"
    TEAM = "team"


@dataclass
class UserRow:
    id: UUID
    email: str
    name: str
    login_count: int
    balance: Decimal
    plan: Plan
    created_at: datetime
    birthday: date | None = None
    deleted_at: datetime | None = None
    tags: list[str] = field(default_factory=list)


class UserStruct(msgspec.Struct):
    id: UUID
    email: str
    name: str
    login_count: int
    balance: Decimal
    plan: Plan
    created_at: datetime
    birthday: date | None = None
    deleted_at: datetime | None = None
    tags: list[str] = []


class UserModel(pydantic.BaseModel):
    id: UUID
    email: str
    name: str
    login_count: int
    balance: Decimal
    plan: Plan
    created_at: datetime
    birthday: date | None = None
    deleted_at: datetime | None = None
    tags: list[str] = []


FIELDS: dict[str, object] = {
    "id": UUID("6f1c2b9e-8d4a-4c1e-9b7a-3e5d2f0a1c44"),
    "email": "ada.lovelace@example.com",
    "name": "Ada Lovelace",
    "login_count": 1842,
    "balance": Decimal("12345.6700"),
    "plan": Plan.PRO,
    "created_at": datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
    "birthday": date(1815, 12, 10),
    "deleted_at": None,
    "tags": ["admin", "beta", "mathematics"],
}


def contenders() -> list[tuple[str, Codec[object], object]]:
    """(label, codec, row) of every contender; JsonCodec first (the baseline)."""
    row = UserRow(**FIELDS)  # type: ignore[arg-type]
    struct = UserStruct(**FIELDS)  # type: ignore[arg-type]
    model = UserModel(**FIELDS)  # type: ignore[arg-type]
    table: list[tuple[str, object, object]] = [
        ("JsonCodec(dataclass)", JsonCodec(UserRow), row),
        ("MsgspecCodec(dataclass, json)", MsgspecCodec(UserRow), row),
        ("MsgspecCodec(dataclass, msgpack)", MsgspecCodec(UserRow, format="msgpack"), row),
        ("MsgspecCodec(Struct, json)", MsgspecCodec(UserStruct), struct),
        ("MsgspecCodec(Struct, msgpack)", MsgspecCodec(UserStruct, format="msgpack"), struct),
        ("PydanticCodec(BaseModel)", PydanticCodec(UserModel), model),
    ]
    return [(label, codec, value) for label, codec, value in table]  # type: ignore[misc]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000, help="calls per codec")
    parser.add_argument("--block", type=int, default=200, help="calls per interleaved block")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)

    timed: list[tuple[Contender, int]] = []
    for label, codec, value in contenders():
        data = codec.encode(value)
        if codec.decode(data) != value:
            print(f"{label} does not round-trip the row", file=sys.stderr)
            return 2

        def call(i: int, codec: Codec[object] = codec, value: object = value) -> object:
            return codec.decode(codec.encode(value))

        timed.append((Contender(label, call), len(data)))
    overhead = call_overhead_ns()
    measure([c for c, _ in timed], args.iterations, args.block, warmup=2_000)

    stats = [(c.label, Stats.of(c.samples, overhead), size) for c, size in timed]
    base = stats[0][1].median_us
    rows = [
        {
            "codec": label,
            "median_us": round(s.median_us, 2),
            "p90_us": round(s.p90_us, 2),
            "bytes": size,
            "vs_json_codec": round(s.median_us / base, 3),
            "speedup": round(base / s.median_us, 2),
        }
        for label, s, size in stats
    ]
    meta = {
        "python": platform.python_version(),
        "msgspec": msgspec.__version__,
        "pydantic": pydantic.VERSION,
        "iterations": args.iterations,
        "timer_overhead_ns": round(overhead, 1),
    }
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
        return 0
    print(", ".join(f"{k} {v}" for k, v in meta.items()))
    print()
    print("| codec | median µs | p90 µs | bytes | codec / JsonCodec | speedup |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['codec']} | {r['median_us']:.2f} | {r['p90_us']:.2f} | {r['bytes']} "
            f"| {r['vs_json_codec']:.3f} | {r['speedup']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
