"""``cascache.prometheus``: the events as Prometheus metrics, read back from a fresh registry."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import cascache
from cascache import InvalidateError, JsonCodec, LocalGenStore, MemoryProvider, Options
from cascache.prometheus import PrometheusHooks


def cache_on(hooks: cascache.Hooks, **options: Any) -> cascache.CAS[Any]:
    options.setdefault("provider", MemoryProvider())
    return cascache.new(Options(namespace="p", codec=JsonCodec(), hooks=hooks, **options))


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_traffic_is_counted_per_cache_and_op() -> None:
    registry = CollectorRegistry()
    cache = cache_on(PrometheusHooks(registry, cache_name="users"))
    assert cache.get("k") is None
    assert cache.get_or_load("k", lambda: 1) == 1
    assert cache.get("k") == cascache.Hit(1)
    old = cache.snapshot_version("k")
    cache.invalidate("k")
    assert not cache.set_if_version("k", 2, old).stored
    assert cache.get_many_or_load(["a", "b"], lambda keys: dict.fromkeys(keys, 0)) == {
        "a": 0,
        "b": 0,
    }
    users = {"cache": "users"}
    assert value(registry, "cascache_hits_total", **users, op="get") == 1
    assert value(registry, "cascache_misses_total", **users, op="get") == 1
    assert value(registry, "cascache_misses_total", **users, op="get_or_load") == 1
    assert value(registry, "cascache_misses_total", **users, op="get_many_or_load") == 2
    assert value(registry, "cascache_load_duration_seconds_count", **users, op="get_or_load") == 1
    assert value(registry, "cascache_loaded_keys_total", **users, op="get_many_or_load") == 2
    seconds = value(registry, "cascache_load_duration_seconds_sum", **users, op="get_or_load")
    assert seconds is not None and seconds >= 0.0
    stored = {"op": "set_if_version", "outcome": "stored"}
    assert value(registry, "cascache_writes_total", **users, **stored) == 1
    mismatch = {"op": "set_if_version", "outcome": "version_mismatch"}
    assert value(registry, "cascache_writes_total", **users, **mismatch) == 1
    batch = {"op": "set_if_versions", "outcome": "stored"}
    assert value(registry, "cascache_writes_total", **users, **batch) == 2
    assert value(registry, "cascache_invalidates_total", **users) == 1


def test_series_exist_from_the_start() -> None:
    registry = CollectorRegistry()
    PrometheusHooks(registry, cache_name="idle")
    assert value(registry, "cascache_hits_total", cache="idle", op="get_many") == 0
    assert value(registry, "cascache_misses_total", cache="idle", op="get") == 0
    rejected = {"op": "set_if_versions", "outcome": "provider_rejected"}
    assert value(registry, "cascache_writes_total", cache="idle", **rejected) == 0
    assert value(registry, "cascache_invalidates_total", cache="idle") == 0


def test_errors_are_counted_by_kind() -> None:
    registry = CollectorRegistry()

    class Broken(LocalGenStore):
        def advance(self, key: str) -> cascache.Version:
            raise OSError("versions down")

    cache = cache_on(PrometheusHooks(registry, cache_name="c"), gen_store=Broken())
    assert cache.get_or_load("k", lambda: {1}) == {1}  # the codec refuses a set
    with pytest.raises(InvalidateError):
        cache.invalidate("k")
    codec = {"cache": "c", "op": "get_or_load", "kind": "codec"}
    assert value(registry, "cascache_errors_total", **codec) == 1
    outage = {"cache": "c", "op": "invalidate", "kind": "invalidate"}
    assert value(registry, "cascache_errors_total", **outage) == 1
    store = {"cache": "c", "op": "get_or_load", "kind": "store"}
    assert value(registry, "cascache_errors_total", **store) is None  # not a store failure


def test_caches_share_one_registry_and_prefix() -> None:
    registry = CollectorRegistry()
    first = cache_on(PrometheusHooks(registry, cache_name="first"))
    second = cache_on(PrometheusHooks(registry, cache_name="second"))
    other = cache_on(PrometheusHooks(registry, prefix="app_cache", cache_name="first"))
    first.get("k")
    second.get("k")
    second.get("k")
    other.get("k")
    assert value(registry, "cascache_misses_total", cache="first", op="get") == 1
    assert value(registry, "cascache_misses_total", cache="second", op="get") == 2
    assert value(registry, "app_cache_misses_total", cache="first", op="get") == 1


def test_the_default_registry_is_prometheus_clients() -> None:
    import prometheus_client

    hooks = PrometheusHooks(prefix="cascache_test_default_registry")
    assert hooks.registry is prometheus_client.REGISTRY
    hooks.hit("get", "k")
    assert (
        prometheus_client.REGISTRY.get_sample_value(
            "cascache_test_default_registry_hits_total", {"cache": "default", "op": "get"}
        )
        == 1
    )


def test_custom_buckets() -> None:
    registry = CollectorRegistry()
    hooks = PrometheusHooks(registry, cache_name="b", buckets=(0.1, 1.0))
    hooks.load("get_or_load", ("k",), 0.5)
    labels = {"cache": "b", "op": "get_or_load"}
    assert value(registry, "cascache_load_duration_seconds_bucket", **labels, le="0.1") == 0
    assert value(registry, "cascache_load_duration_seconds_bucket", **labels, le="1.0") == 1


def test_without_prometheus_client_the_import_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "cascache.prometheus")
    with pytest.raises(ImportError, match=r"pip install 'cascache\[prometheus\]'"):
        importlib.import_module("cascache.prometheus")
