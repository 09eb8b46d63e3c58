"""Who hears about finished requests and executions: statistics, Prometheus metrics, the profiler.

Called on the event-loop thread once per request and once per execution; observers must be cheap.
"""

from __future__ import annotations

from typing import Protocol

from packserve.messages import RequestTiming


class InferenceObserver(Protocol):
    def request_finished(
        self, model: str, version: str, timing: RequestTiming, error_reason: str | None
    ) -> None:
        """One request ended. `error_reason` is None on success, else the error's `reason`
        ("REJECTED", "BACKEND", "CANCELED", "OTHER")."""

    def execution_finished(self, model: str, version: str, batch_size: int, timing: RequestTiming) -> None:
        """One backend execution of `batch_size` rows ended; `timing` is its first request's."""

    def queue_size_changed(self, model: str, version: str, pending: int) -> None:
        """Requests waiting or executing for this model changed."""

    def model_loaded(self, model: str, version: str, seconds: float) -> None:
        """A model version became ready after `seconds` of loading."""

    def model_unloaded(self, model: str, version: str) -> None:
        """A model version left."""
