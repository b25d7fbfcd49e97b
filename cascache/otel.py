"""``OtelHooks``: cache events as OpenTelemetry metrics (the ``otel`` extra:
``pip install 'cascache[otel]'``, the OpenTelemetry metrics API only; bring your own SDK
and exporter).

Instruments, created on the ``Meter`` you give (``prefix`` defaults to ``cascache``;
every data point has the attribute ``cache``):

===============================  =======================  ================================
instrument                       attributes               counts
===============================  =======================  ================================
``{prefix}.hits``                ``op``                   keys served from the cache
``{prefix}.misses``              ``op``                   keys not served
``{prefix}.load.duration`` (s)   ``op``                   loader calls (a histogram)
``{prefix}.loaded_keys``         ``op``                   keys loaders were asked for
``{prefix}.writes``              ``op``, ``outcome``      keys written, by outcome
``{prefix}.invalidates``                                  successful invalidates
``{prefix}.errors``              ``op``, ``kind``         failures the cache absorbed
``{prefix}.self_healed``         ``op``                   unservable entries dropped
``{prefix}.batch_rejected``                               batch entries dropped
===============================  =======================  ================================

``kind`` is ``read``, ``store``, ``codec``, ``version``, ``invalidate`` or ``cleanup``,
as in :mod:`cascache.prometheus`. Several caches share the instruments of one meter
and prefix, told apart by ``cache``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

try:
    from opentelemetry.metrics import Counter, Histogram, Meter
except ImportError as exc:
    raise ImportError(
        "cascache.otel needs the OpenTelemetry metrics API: pip install 'cascache[otel]'"
    ) from exc

from cascache.hooks import FailuresByKind
from cascache.results import WriteOutcome

Attributes = dict[str, str]


@dataclass(frozen=True)
class _Instruments:
    hits: Counter
    misses: Counter
    load_duration: Histogram
    loaded_keys: Counter
    writes: Counter
    invalidates: Counter
    errors: Counter
    self_healed: Counter
    batch_rejected: Counter


_shared: weakref.WeakKeyDictionary[Meter, dict[str, _Instruments]] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def _instruments(meter: Meter, prefix: str) -> _Instruments:
    """The instruments of ``prefix`` on ``meter``, created on first use: every cache on
    the meter adds to the same ones, whatever an API implementation does with a name
    created twice (the SDK hands back the first; others may warn or duplicate)."""
    with _shared_lock:
        by_prefix = _shared.setdefault(meter, {})
        found = by_prefix.get(prefix)
        if found is not None:
            return found

        def counter(name: str, unit: str, description: str) -> Counter:
            return meter.create_counter(f"{prefix}.{name}", unit, description)

        instruments = _Instruments(
            hits=counter("hits", "{key}", "Keys served from the cache."),
            misses=counter("misses", "{key}", "Keys a read did not serve from the cache."),
            load_duration=meter.create_histogram(
                f"{prefix}.load.duration", "s", "Time a loader call took."
            ),
            loaded_keys=counter("loaded_keys", "{key}", "Keys loaders were asked for."),
            writes=counter("writes", "{key}", "Keys a conditional write finished with."),
            invalidates=counter("invalidates", "{invalidate}", "Successful invalidates."),
            errors=counter("errors", "{error}", "Store failures the cache absorbed."),
            self_healed=counter("self_healed", "{entry}", "Unservable single entries dropped."),
            batch_rejected=counter("batch_rejected", "{entry}", "Batch entries dropped."),
        )
        by_prefix[prefix] = instruments
        return instruments


class OtelHooks(FailuresByKind):
    """Records a cache's events on OpenTelemetry instruments (see the module docstring).

    Args:
        meter: the ``Meter`` to create the instruments on (``metrics.get_meter(...)``).
            Hooks built on the same meter and prefix share the instruments.
        prefix: the start of every instrument name.
        cache_name: the value of the ``cache`` attribute, to tell caches apart.
    """

    def __init__(self, meter: Meter, prefix: str = "cascache", cache_name: str = "default") -> None:
        self.meter = meter
        self.prefix = prefix
        self.cache_name = cache_name
        self._i = _instruments(meter, prefix)
        self._cache: Attributes = {"cache": cache_name}
        # One attribute dict per label set, built once: the SDK does not keep the dict,
        # but building one on every hit would cost more than recording the hit.
        self._by_op: dict[str, Attributes] = {}
        self._writes: dict[tuple[str, WriteOutcome], Attributes] = {}

    def _op(self, op: str) -> Attributes:
        attributes = self._by_op.get(op)
        if attributes is None:
            attributes = self._by_op[op] = {"cache": self.cache_name, "op": op}
        return attributes

    def failed(self, op: str, kind: str) -> None:
        """Count an absorbed failure in the errors metric, labelled by ``kind``."""
        self._i.errors.add(1, {"cache": self.cache_name, "op": op, "kind": kind})

    def hit(self, op: str, key: str) -> None:
        """``{prefix}.hits`` += 1."""
        self._i.hits.add(1, self._op(op))

    def miss(self, op: str, key: str) -> None:
        """``{prefix}.misses`` += 1."""
        self._i.misses.add(1, self._op(op))

    def load(self, op: str, keys: Sequence[str], seconds: float) -> None:
        """Record ``seconds`` in ``{prefix}.load.duration``; count the keys."""
        attributes = self._op(op)
        self._i.load_duration.record(seconds, attributes)
        self._i.loaded_keys.add(len(keys), attributes)

    def write(self, op: str, key: str, outcome: WriteOutcome) -> None:
        """``{prefix}.writes{outcome}`` += 1."""
        attributes = self._writes.get((op, outcome))
        if attributes is None:
            attributes = {"cache": self.cache_name, "op": op, "outcome": outcome.value}
            self._writes[op, outcome] = attributes
        self._i.writes.add(1, attributes)

    def invalidate(self, key: str) -> None:
        """``{prefix}.invalidates`` += 1."""
        self._i.invalidates.add(1, self._cache)

    def self_healed(self, op: str, key: str, reason: str) -> None:
        """``{prefix}.self_healed`` += 1."""
        self._i.self_healed.add(1, self._op(op))

    def batch_rejected(self, keys: Sequence[str], reason: str) -> None:
        """``{prefix}.batch_rejected`` += 1."""
        self._i.batch_rejected.add(1, self._cache)
