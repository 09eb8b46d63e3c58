"""What a front end's kept decode plan remembers of an infer request besides its model and tensors,
and the `InferRequest` each decode builds from it. Every decode gets its own outputs list and
parameters dict: the engine and header forwarding may change them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from packserve.messages import InferRequest, RequestedOutput


@dataclass(frozen=True, slots=True)
class RequestFields:
    outputs: tuple[RequestedOutput, ...] | None
    request_id: str
    priority: int
    timeout_us: int
    parameters: dict[str, Any]

    @classmethod
    def of(cls, request: InferRequest) -> RequestFields:
        outputs = None if request.outputs is None else tuple(request.outputs)
        return cls(outputs, request.id, request.priority, request.timeout_us, dict(request.parameters))

    def request(self, model: str, version: str, inputs: dict[str, Any]) -> InferRequest:
        return InferRequest(
            model_name=model,
            inputs=inputs,
            model_version=version,
            outputs=None if self.outputs is None else list(self.outputs),
            id=self.request_id,
            priority=self.priority,
            timeout_us=self.timeout_us,
            parameters=dict(self.parameters) if self.parameters else {},
        )
