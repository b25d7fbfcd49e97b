"""Storage keys: no collisions across namespaces, one hash slot per key, set-keyed batches."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from redis.crc import key_slot

from cascache.keys import PREFIX, CacheKey, KeySpace, check_key

names = st.text(min_size=1, max_size=12)
pairs = st.tuples(names, names)

TAG = re.compile(r"\{([^}]*)\}")


def tag_of(storage_key: str) -> str:
    """The part Redis Cluster hashes: the first ``{...}`` with something inside."""
    match = TAG.search(storage_key)
    assert match is not None
    return match.group(1)


@given(pairs, pairs)
def test_distinct_pairs_get_distinct_keys(a: tuple[str, str], b: tuple[str, str]) -> None:
    assume(a != b)
    ka = KeySpace(a[0]).single(a[1])
    kb = KeySpace(b[0]).single(b[1])
    assert ka.value != kb.value
    assert ka.version != kb.version
    assert len({ka.value, ka.version, kb.value, kb.version}) == 4


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("a:b", "c"), ("a", "b:c")),
        (("1:a", "b"), ("1", "a:b")),
        (("ns", "k:v"), ("ns:k", "v")),
        (("x", "1:y"), ("x:1", "y")),
    ],
)
def test_separator_in_namespace_or_key_does_not_collide(
    a: tuple[str, str], b: tuple[str, str]
) -> None:
    ka = KeySpace(a[0]).single(a[1])
    kb = KeySpace(b[0]).single(b[1])
    assert ka.value != kb.value
    assert ka.version != kb.version


@given(names, names)
def test_value_and_version_share_a_hex_hash_tag(namespace: str, key: str) -> None:
    ck = KeySpace(namespace).single(key)
    assert isinstance(ck, CacheKey)
    assert ck.key == key
    assert ck.value != ck.version
    assert ck.value.startswith(f"{PREFIX}:{{")
    tag = tag_of(ck.value)
    assert tag == tag_of(ck.version)
    assert re.fullmatch(r"[0-9a-f]{16}", tag)
    assert key_slot(ck.value.encode()) == key_slot(ck.version.encode())


def test_braces_in_keys_do_not_move_the_slot() -> None:
    ks = KeySpace("n{s}")
    for key in ["{a}", "}{", "{", "x{y}z", "{}"]:
        ck = ks.single(key)
        assert key_slot(ck.value.encode()) == key_slot(ck.version.encode())
        assert re.fullmatch(r"[0-9a-f]{16}", tag_of(ck.value))


def test_single_is_deterministic() -> None:
    assert KeySpace("ns").single("k") == KeySpace("ns").single("k")
    assert KeySpace("ns").single("k") != KeySpace("ns").single("K")


@given(st.lists(names, min_size=1, max_size=6), st.randoms())
def test_batch_key_ignores_order_and_repeats(keys: list[str], rnd: random.Random) -> None:
    ks = KeySpace("ns")
    shuffled = list(keys)
    rnd.shuffle(shuffled)
    assert ks.batch(keys) == ks.batch(shuffled)
    assert ks.batch(keys) == ks.batch(keys + keys[:1])
    assert ks.batch(keys) == ks.batch(iter(keys))


@given(st.sets(names, min_size=1, max_size=5), st.sets(names, min_size=1, max_size=5))
def test_different_member_sets_get_different_batch_keys(a: set[str], b: set[str]) -> None:
    assume(a != b)
    ks = KeySpace("ns")
    assert ks.batch(a) != ks.batch(b)


def test_batch_member_framing_does_not_collide() -> None:
    ks = KeySpace("ns")
    assert ks.batch(["ab", "c"]) != ks.batch(["a", "bc"])
    assert ks.batch(["a,b"]) != ks.batch(["a", "b"])


def test_batch_key_depends_on_namespace_and_differs_from_singles() -> None:
    keys = ["a", "b"]
    assert KeySpace("x").batch(keys) != KeySpace("y").batch(keys)
    batch = KeySpace("x").batch(keys)
    assert batch.startswith(f"{PREFIX}:{{")
    assert re.fullmatch(r"[0-9a-f]{16}", tag_of(batch))
    assert batch not in {KeySpace("x").single(k).value for k in keys}
    assert KeySpace("x").batch(["a"]) != KeySpace("x").single("a").value


def test_check_key() -> None:
    assert check_key("get", "k") == "k"
    with pytest.raises(TypeError, match=r"cascache get: keys are str, got int 1"):
        check_key("get", 1)
    with pytest.raises(TypeError, match="bytes"):
        check_key("get", b"k")
    with pytest.raises(ValueError, match=r"cascache invalidate: the empty string"):
        check_key("invalidate", "")


@pytest.mark.parametrize("namespace", ["", None, 1, b"ns"])
def test_keyspace_needs_a_namespace(namespace: object) -> None:
    with pytest.raises(ValueError, match="namespace"):
        KeySpace(namespace)  # type: ignore[arg-type]


def test_a_key_that_is_not_unicode_text_is_refused() -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        check_key("get", "\ud800")
    assert check_key("get", "ключ") == "ключ"
