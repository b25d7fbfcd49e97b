"""``PrometheusHooks``: cache events as ``prometheus_client`` metrics (the ``prometheus``
extra: ``pip install 'cascache[prometheus]'``).

Metrics (``prefix`` defaults to ``cascache``; every one has the label ``cache``):

=====================================  =====================  ===========================
metric                                 labels                 counts
=====================================  =====================  ===========================
``{prefix}_hits_total``                ``op``                 keys served from the cache
``{prefix}_misses_total``              ``op``                 keys not served
``{prefix}_load_duration_seconds``     ``op``                 loader calls (a histogram)
``{prefix}_loaded_keys_total``         ``op``                 keys loaders were asked for
``{prefix}_writes_total``              ``op``, ``outcome``    keys written, by outcome
``{prefix}_invalidates_total``                                successful invalidates
``{prefix}_errors_total``              ``op``, ``kind``       failures the cache absorbed
``{prefix}_self_healed_total``         ``op``                 unservable entries dropped
``{prefix}_batch_rejected_total``                             batch entries dropped
=====================================  =====================  ===========================

``kind`` is ``read``, ``store``, ``codec``, ``version``, ``invalidate`` or ``cleanup``
(the hook events ``read_error``, ``store_error``, ``codec_error``,
``version_snapshot_error``, ``invalidate_outage``, ``cleanup_error``). Several caches
share the metrics of one registry and prefix, told apart by ``cache``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
except ImportError as exc:
    raise ImportError(
        "cascache.prometheus needs prometheus_client: pip install 'cascache[prometheus]'"
    ) from exc

from cascache.hooks import FailuresByKind
from cascache.results import WriteOutcome

LOAD_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""The default buckets of the load-duration histogram, in seconds (loaders are database
reads and remote calls: half a millisecond to ten seconds)."""

READ_OPS = ("get", "get_or_load", "get_many", "get_many_or_load")
WRITE_OPS = ("set_if_version", "set_if_versions")


@dataclass(frozen=True)
class _Metrics:
    hits: Counter
    misses: Counter
    load_seconds: Histogram
    loaded_keys: Counter
    writes: Counter
    invalidates: Counter
    errors: Counter
    self_healed: Counter
    batch_rejected: Counter


_shared: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Metrics]] = (
    weakref.WeakKeyDictionary()
)
_shared_lock = threading.Lock()


def _metrics(registry: CollectorRegistry, prefix: str, buckets: Sequence[float]) -> _Metrics:
    """The metrics of ``prefix`` in ``registry``, registered on first use: a registry
    refuses a name twice, and every cache of a process should add to the same series."""
    with _shared_lock:
        by_prefix = _shared.setdefault(registry, {})
        found = by_prefix.get(prefix)
        if found is not None:
            return found

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(f"{prefix}_{name}", doc, ("cache", *labels), registry=registry)

        metrics = _Metrics(
            hits=counter("hits", "Keys served from the cache.", "op"),
            misses=counter("misses", "Keys a read did not serve from the cache.", "op"),
            load_seconds=Histogram(
                f"{prefix}_load_duration_seconds",
                "Time a loader call took (one observation per call).",
                ("cache", "op"),
                registry=registry,
                buckets=tuple(buckets),
            ),
            loaded_keys=counter("loaded_keys", "Keys loaders were asked for.", "op"),
            writes=counter("writes", "Keys a conditional write finished with.", "op", "outcome"),
            invalidates=counter("invalidates", "Successful invalidates."),
            errors=counter("errors", "Store failures the cache absorbed.", "op", "kind"),
            self_healed=counter("self_healed", "Unservable single entries dropped.", "op"),
            batch_rejected=counter("batch_rejected", "Batch entries dropped."),
        )
        by_prefix[prefix] = metrics
        return metrics


class PrometheusHooks(FailuresByKind):
    """Exports a cache's events as Prometheus metrics (see the module docstring).

    Args:
        registry: where the metrics are registered (default: ``prometheus_client``'s
            global ``REGISTRY``). Hooks built on the same registry and prefix share the
            metrics; the first one built decides the histogram's buckets.
        prefix: the start of every metric name.
        cache_name: the value of the ``cache`` label, to tell caches apart.
        buckets: the load-duration histogram's buckets, in seconds.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        prefix: str = "cascache",
        cache_name: str = "default",
        buckets: Sequence[float] = LOAD_BUCKETS,
    ) -> None:
        self.registry = registry if registry is not None else REGISTRY
        self.prefix = prefix
        self.cache_name = cache_name
        self._m = _metrics(self.registry, prefix, buckets)
        # Labelled children are looked up once per label set: ``labels()`` takes a lock
        # and builds a key, which would cost more than the increment on every hit.
        self._hits: dict[str, Counter] = {}
        self._misses: dict[str, Counter] = {}
        self._writes: dict[tuple[str, WriteOutcome], Counter] = {}
        self._invalidates = self._m.invalidates.labels(cache_name)
        self._batch_rejected = self._m.batch_rejected.labels(cache_name)
        # Series that exist from the start read 0 rather than absent, so rates work
        # from the first event.
        for op in READ_OPS:
            self._hit_child(op)
            self._miss_child(op)
        for op in WRITE_OPS:
            for outcome in WriteOutcome:
                self._write_child(op, outcome)

    def _hit_child(self, op: str) -> Counter:
        child = self._hits.get(op)
        if child is None:
            child = self._hits[op] = self._m.hits.labels(self.cache_name, op)
        return child

    def _miss_child(self, op: str) -> Counter:
        child = self._misses.get(op)
        if child is None:
            child = self._misses[op] = self._m.misses.labels(self.cache_name, op)
        return child

    def _write_child(self, op: str, outcome: WriteOutcome) -> Counter:
        child = self._writes.get((op, outcome))
        if child is None:
            child = self._m.writes.labels(self.cache_name, op, outcome.value)
            self._writes[op, outcome] = child
        return child

    def failed(self, op: str, kind: str) -> None:
        """Count an absorbed failure in the errors metric, labelled by ``kind``."""
        self._m.errors.labels(self.cache_name, op, kind).inc()

    def hit(self, op: str, key: str) -> None:
        """``{prefix}_hits_total{op}`` += 1."""
        self._hit_child(op).inc()

    def miss(self, op: str, key: str) -> None:
        """``{prefix}_misses_total{op}`` += 1."""
        self._miss_child(op).inc()

    def load(self, op: str, keys: Sequence[str], seconds: float) -> None:
        """Observe ``seconds`` in ``{prefix}_load_duration_seconds{op}``; count the keys."""
        self._m.load_seconds.labels(self.cache_name, op).observe(seconds)
        self._m.loaded_keys.labels(self.cache_name, op).inc(len(keys))

    def write(self, op: str, key: str, outcome: WriteOutcome) -> None:
        """``{prefix}_writes_total{op, outcome}`` += 1."""
        self._write_child(op, outcome).inc()

    def invalidate(self, key: str) -> None:
        """``{prefix}_invalidates_total`` += 1."""
        self._invalidates.inc()

    def self_healed(self, op: str, key: str, reason: str) -> None:
        """``{prefix}_self_healed_total{op}`` += 1."""
        self._m.self_healed.labels(self.cache_name, op).inc()

    def batch_rejected(self, keys: Sequence[str], reason: str) -> None:
        """``{prefix}_batch_rejected_total`` += 1."""
        self._batch_rejected.inc()
