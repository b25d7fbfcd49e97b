"""``cascache.otel``: the events on OpenTelemetry instruments, read back through an SDK
``MeterProvider`` with an ``InMemoryMetricReader``."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

import cascache
from cascache import InvalidateError, JsonCodec, LocalGenStore, MemoryProvider, Options
from cascache.otel import OtelHooks

Points = dict[tuple[str, frozenset[tuple[str, Any]]], Any]


def meter_and_reader() -> tuple[Any, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    return provider.get_meter("cascache-test"), reader


def points(reader: InMemoryMetricReader) -> Points:
    """``(instrument, attributes) -> value``; a histogram's value is ``(count, sum)``."""
    found: Points = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attributes = frozenset(dict(point.attributes or {}).items())
                    if isinstance(point, HistogramDataPoint):
                        found[metric.name, attributes] = (point.count, point.sum)
                    else:
                        found[metric.name, attributes] = point.value
    return found


def at(**attributes: str) -> frozenset[tuple[str, Any]]:
    return frozenset(attributes.items())


def cache_on(hooks: cascache.Hooks, **options: Any) -> cascache.CAS[Any]:
    options.setdefault("provider", MemoryProvider())
    return cascache.new(Options(namespace="o", codec=JsonCodec(), hooks=hooks, **options))


def test_traffic_is_recorded_per_cache_and_op() -> None:
    meter, reader = meter_and_reader()
    cache = cache_on(OtelHooks(meter, cache_name="users"))
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
    got = points(reader)
    assert got["cascache.hits", at(cache="users", op="get")] == 1
    assert got["cascache.misses", at(cache="users", op="get")] == 1
    assert got["cascache.misses", at(cache="users", op="get_or_load")] == 1
    assert got["cascache.misses", at(cache="users", op="get_many_or_load")] == 2
    count, seconds = got["cascache.load.duration", at(cache="users", op="get_or_load")]
    assert count == 1 and seconds >= 0.0
    assert got["cascache.loaded_keys", at(cache="users", op="get_many_or_load")] == 2
    stored = at(cache="users", op="set_if_version", outcome="stored")
    assert got["cascache.writes", stored] == 1
    mismatch = at(cache="users", op="set_if_version", outcome="version_mismatch")
    assert got["cascache.writes", mismatch] == 1
    assert got["cascache.writes", at(cache="users", op="set_if_versions", outcome="stored")] == 2
    assert got["cascache.invalidates", at(cache="users")] == 1


def test_errors_are_recorded_by_kind() -> None:
    meter, reader = meter_and_reader()

    class Broken(LocalGenStore):
        def advance(self, key: str) -> cascache.Version:
            raise OSError("versions down")

    cache = cache_on(OtelHooks(meter, cache_name="c"), gen_store=Broken())
    assert cache.get_or_load("k", lambda: {1}) == {1}  # the codec refuses a set
    with pytest.raises(InvalidateError):
        cache.invalidate("k")
    got = points(reader)
    assert got["cascache.errors", at(cache="c", op="get_or_load", kind="codec")] == 1
    assert got["cascache.errors", at(cache="c", op="invalidate", kind="invalidate")] == 1
    assert [key for key in got if key[0] == "cascache.errors"] == [
        ("cascache.errors", at(cache="c", op="get_or_load", kind="codec")),
        ("cascache.errors", at(cache="c", op="invalidate", kind="invalidate")),
    ]


def test_caches_share_the_instruments_of_one_meter() -> None:
    meter, reader = meter_and_reader()
    first = cache_on(OtelHooks(meter, cache_name="first"))
    second = cache_on(OtelHooks(meter, cache_name="second"))
    first.get("k")
    second.get("k")
    second.get("k")
    got = points(reader)
    assert got["cascache.misses", at(cache="first", op="get")] == 1
    assert got["cascache.misses", at(cache="second", op="get")] == 2


def test_the_instrument_units() -> None:
    meter, reader = meter_and_reader()
    hooks = OtelHooks(meter, prefix="app")
    hooks.load("get_or_load", ("k",), 0.5)
    hooks.hit("get", "k")
    data = reader.get_metrics_data()
    assert data is not None
    units = {
        metric.name: metric.unit
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert units == {"app.load.duration": "s", "app.loaded_keys": "{key}", "app.hits": "{key}"}


def test_without_the_api_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.metrics", None)
    monkeypatch.delitem(sys.modules, "cascache.otel")
    with pytest.raises(ImportError, match=r"pip install 'cascache\[otel\]'"):
        importlib.import_module("cascache.otel")
