"""The engine's public surface: the only door the front ends use.

`packserve.core.engine.Engine` implements it; front-end tests may use any object with this shape.
Every method runs on the event loop. Errors are `packserve.errors` types, never status codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from packserve.core.shared_memory import SharedMemoryRegistry
from packserve.core.views import IndexEntry, ModelMetadata, ModelStatistics, ServerMetadata
from packserve.messages import InferRequest, InferResponse

# How long requests in flight get to finish when the server or a model goes down, unless told.
DEFAULT_DRAIN_TIMEOUT_S = 30.0

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig


class EngineApi(Protocol):
    # Clients' system shared-memory regions; the front ends register, read and write them.
    shared_memory: SharedMemoryRegistry

    def server_metadata(self) -> ServerMetadata: ...

    def is_live(self) -> bool: ...

    def is_ready(self) -> bool:
        """Live, not draining, and every model asked for at startup loaded (failed ones aside)."""
        ...

    def model_ready(self, name: str, version: str = "") -> bool:
        """False (not an error) for unknown or unloaded models, as Triton answers."""
        ...

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        """NotFoundError for an unknown model/version, ModelNotReadyError if not loaded."""
        ...

    def model_config(self, name: str, version: str = "") -> ModelConfig:
        """The normalized protobuf config of a ready model."""
        ...

    def model_statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        """All ready models' statistics when name is ""; NotFoundError for an unknown model."""
        ...

    def repository_index(self, ready_only: bool = False) -> list[IndexEntry]: ...

    async def load_model(
        self, name: str, config_json: str | None = None, files: dict[str, bytes] | None = None
    ) -> None:
        """(Re)load a model, optionally with a JSON config override; ModelLoadError with the
        reason if it fails (the model then shows UNAVAILABLE with that reason)."""
        ...

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None: ...

    async def infer(self, request: InferRequest) -> InferResponse:
        """Validate, admit, schedule and run one request. Raises a PackserveError subtype."""
        ...

    def trace_setting(self, model: str = "") -> dict[str, Any]:
        """Triton's trace settings (global when model is ""), in Triton's JSON form."""
        ...

    def update_trace_setting(self, model: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply changes (null = back to the global value) and return the settings now in force."""
        ...

    async def shutdown(self, drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S) -> bool:
        """Stop admitting, finish what is in flight (up to the timeout), unload everything."""
        ...
