"""Storage keys: no collisions across namespaces, one hash slot per key, set-keyed batches."""

from __future__ import annotations

import enum
import random
import re
import sys
import threading

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from redis.crc import key_slot

from cascache.keys import KEY_CACHE_CHARS, KEY_CACHE_SIZE, PREFIX, CacheKey, KeySpace, canonical_key
from tests.conftest import AnyRedis, Hostile

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


def test_canonical_key() -> None:
    assert canonical_key("get", "k") == "k"
    with pytest.raises(TypeError, match=r"cascache get: keys are str, got int 1"):
        canonical_key("get", 1)
    with pytest.raises(TypeError, match=r"got bytes b'k': decode it \(key\.decode\(\)\)"):
        canonical_key("get", b"k")
    with pytest.raises(TypeError, match=r"got int 1: convert it yourself, e\.g\. str\(1\)$"):
        canonical_key("get", 1)
    with pytest.raises(TypeError, match=r"join its parts into one string"):
        canonical_key("get", ("a", 1))
    with pytest.raises(TypeError, match=r"got NoneType None$"):
        canonical_key("get", None)
    with pytest.raises(ValueError, match=r"cascache invalidate: the empty string"):
        canonical_key("invalidate", "")


@pytest.mark.parametrize("namespace", ["", None, 1, b"ns"])
def test_keyspace_needs_a_namespace(namespace: object) -> None:
    with pytest.raises(ValueError, match="namespace"):
        KeySpace(namespace)  # type: ignore[arg-type]


def test_a_key_that_is_not_unicode_text_is_refused() -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        canonical_key("get", "\ud800")
    assert canonical_key("get", "ключ") == "ключ"


class Mixed(str, enum.Enum):  # noqa: UP042 - the mixin is the point: its f-string is not its value
    A = "a"


def spellings(text: str) -> list[str]:
    """The plain string, a hostile subclass, and a ``StrEnum`` member whose value it is."""
    member: str = enum.StrEnum("Spelt", {"M": text}).M  # type: ignore[attr-defined]
    return [text, Hostile(text), member]


@given(names, names)
def test_every_spelling_of_a_key_is_its_plain_value(namespace: str, key: str) -> None:
    plain = KeySpace(namespace)
    for spelt in spellings(key):
        canonical = canonical_key("get", spelt)
        assert type(canonical) is str and canonical == key
        for ns in spellings(namespace):
            ks = KeySpace(ns)
            assert type(ks.namespace) is str and ks.namespace == namespace
            assert ks.single(canonical) == plain.single(key)
            assert ks.single(spelt) == plain.single(key)  # even past the API boundary
            assert type(ks.single(spelt).key) is str
            assert ks.batch([spelt, "z"]) == plain.batch([key, "z"])


def test_a_mixed_in_str_enum_is_its_value() -> None:
    assert f"{Mixed.A}" == "Mixed.A"  # what string formatting would have used
    assert canonical_key("get", Mixed.A) == "a"
    assert KeySpace("n").single(Mixed.A) == KeySpace("n").single("a")


def test_storage_names_are_cached_per_instance_and_bounded() -> None:
    ks = KeySpace("bounded")
    first = ks.single("k0")
    for i in range(1, KEY_CACHE_SIZE + 50):
        ks.single(f"k{i}")
    assert len(ks._cache) == KEY_CACHE_SIZE
    assert ks.single("k0") == first  # derived again, the same names
    ks.clear()
    assert not ks._cache
    assert KeySpace("bounded")._cache == {}  # nothing shared between instances


@pytest.mark.parametrize("backend", ["fake_redis", "real_redis"])
@pytest.mark.parametrize("namespace", ["ns", "a*", "a?b", "x[1]", "back\\slash", "2:ns", "n"])
def test_scan_pattern_finds_exactly_the_namespace(
    backend: str, namespace: str, request: pytest.FixtureRequest
) -> None:
    client: AnyRedis = request.getfixturevalue(backend)
    ours = KeySpace(namespace)
    # Neighbours whose names contain ours, or could match a careless glob.
    neighbours = [KeySpace(ns) for ns in ("ns", "a", "ab", "a?b", "x1", "2", "n", "ns:2")]
    keys = ["k", "k:v:2:ns:k", f"v:{len(namespace)}:{namespace}:k"]
    for space in [ours, *neighbours]:
        for key in keys:
            ck = space.single(key)
            client.set(ck.value, b"v")
            client.set(ck.version, b"g")
        client.set(space.batch(keys), b"b")
    expected = {ours.single(k).value for k in keys}
    assert _scan(client, ours.pattern("value")) == expected
    assert _scan(client, ours.pattern("version")) == {ours.single(k).version for k in keys}
    assert _scan(client, ours.pattern("batch")) == {ours.batch(keys)}
    everything = _scan(client, ours.pattern())
    assert everything == expected | {ours.single(k).version for k in keys} | {ours.batch(keys)}


def _scan(client: AnyRedis, pattern: str) -> set[str]:
    return {name.decode() for name in client.scan_iter(match=pattern, count=1000)}


def test_different_keys_get_different_tags() -> None:
    space = KeySpace("ns")
    tags = {tag_of(space.single(f"key-{i}").value) for i in range(64)}
    assert len(tags) == 64


def test_threads_deriving_keys_keep_the_name_cache_accounting_exact() -> None:
    # Every operation on every thread derives keys: without the lock, two threads adding
    # the same new key counted it twice, and evictions raced (the bound drifted).
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        space = KeySpace("ns", cache_size=64)

        def derive() -> None:
            for i in range(5000):
                space.single(f"k{i % 1000}")

        threads = [threading.Thread(target=derive) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert len(space._cache) == 64
    assert space._chars == sum(space._chars_of(key) for key in space._cache)


def test_long_keys_cannot_make_the_name_cache_large() -> None:
    ks = KeySpace("ns")
    for i in range(2000):
        ks.single(f"{i:05d}" + "k" * 2000)  # about 6,000 characters with both names
        assert ks._chars <= KEY_CACHE_CHARS
        ks.single(f"short-{i}")
        assert ks._chars <= KEY_CACHE_CHARS
    assert sum(len(c.key) + len(c.value) + len(c.version) for c in ks._cache.values()) == ks._chars
    huge = "h" * (KEY_CACHE_CHARS // 16)
    assert ks.single(huge) == ks.single(huge) and huge not in ks._cache  # derived each time
    ks.clear()
    assert ks._chars == 0 and not ks._cache


def test_a_namespace_that_is_not_valid_unicode_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        KeySpace("ns\ud800")


def test_names_are_derived_on_first_use_and_kept() -> None:
    ks = KeySpace("lazy")
    ck = ks.single("k")
    with pytest.raises(AttributeError):
        object.__getattribute__(ck, "value")  # nothing derived yet
    value = ck.value
    assert object.__getattribute__(ck, "value") is value is ck.value
    assert ck.names() == (value, ck.version) and ck.version_name() == (ck.version,)
    assert (value, ck.version) == KeySpace("lazy").names_of("k")


def test_a_cache_key_with_explicit_names_compares_by_key_and_names() -> None:
    derived = KeySpace("n").single("k")
    explicit = CacheKey("k", derived.value, derived.version)
    assert explicit == derived and hash(explicit) == hash(derived)
    assert explicit != CacheKey("k", derived.value, "other")
    assert repr(explicit) == (
        f"CacheKey(key='k', value={derived.value!r}, version={derived.version!r})"
    )
    with pytest.raises(AttributeError):
        _ = explicit.other  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "args",
    [("k", "v", None), ("k", None, "g"), ("k", None, None)],
    ids=["no-version", "no-value", "nothing"],
)
def test_a_cache_key_needs_both_names_or_a_key_space(
    args: tuple[str, str | None, str | None],
) -> None:
    with pytest.raises(ValueError, match="both storage names, or the KeySpace"):
        CacheKey(*args)


@pytest.mark.parametrize("size", [-1, 1.5, True])
def test_key_space_refuses_a_bad_cache_size(size: object) -> None:
    with pytest.raises(ValueError, match="cache_size must be an int >= 0"):
        KeySpace("n", size)  # type: ignore[arg-type]


def test_a_key_space_without_a_cache_derives_every_time() -> None:
    ks = KeySpace("n", 0)
    assert ks.single("k") == ks.single("k") and not ks._cache and ks._chars == 0
