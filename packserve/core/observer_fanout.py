"""Fan one stream of request/execution events out to every observer (statistics, metrics, ...)."""

from __future__ import annotations

from packserve.core.observer import InferenceObserver
from packserve.messages import RequestTiming


class ObserverFanout:
    """An InferenceObserver that forwards each event to a list of observers, in order."""

    def __init__(self, observers: list[InferenceObserver]) -> None:
        self._observers = list(observers)

    def add(self, observer: InferenceObserver) -> None:
        self._observers.append(observer)

    def request_finished(
        self, model: str, version: str, timing: RequestTiming, error_reason: str | None
    ) -> None:
        for observer in self._observers:
            observer.request_finished(model, version, timing, error_reason)

    def execution_finished(self, model: str, version: str, batch_size: int, timing: RequestTiming) -> None:
        for observer in self._observers:
            observer.execution_finished(model, version, batch_size, timing)

    def queue_size_changed(self, model: str, version: str, pending: int) -> None:
        for observer in self._observers:
            observer.queue_size_changed(model, version, pending)

    # Response-cache events go to the observers that listen for them (statistics, Prometheus);
    # the others need not know the cache exists.
    def cache_hit(self, model: str, version: str, timing: RequestTiming) -> None:
        for observer in self._observers:
            hit = getattr(observer, "cache_hit", None)
            if hit is not None:
                hit(model, version, timing)

    def cache_miss(self, model: str, version: str, lookup_ns: int) -> None:
        for observer in self._observers:
            miss = getattr(observer, "cache_miss", None)
            if miss is not None:
                miss(model, version, lookup_ns)

    def model_loaded(self, model: str, version: str, seconds: float) -> None:
        for observer in self._observers:
            observer.model_loaded(model, version, seconds)

    def model_unloaded(self, model: str, version: str) -> None:
        for observer in self._observers:
            observer.model_unloaded(model, version)
