"""What composite models (ensembles, region maps) need from the engine: a way to run a sub-request.

Kept as a protocol so the composite schedulers never import the engine itself.
"""

from __future__ import annotations

from typing import Protocol

from packserve.messages import InferRequest, InferResponse
from packserve.model_spec import ModelSpec


class Dispatcher(Protocol):
    async def infer(self, request: InferRequest) -> InferResponse:
        """Run a request through its model's own scheduler, with statistics, as a client's would."""
        ...

    def model_spec(self, name: str) -> ModelSpec:
        """The spec of the ready model `name` (latest version); raises if it is not ready."""
        ...
