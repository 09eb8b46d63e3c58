"""ModelInfer from and to its wire bytes, for a transport that hands over the message unparsed (the
native one): a request laid out like one seen before is decoded from a kept plan without protobuf,
and the answer is written as bytes around the output tensors.

Protobuf writers put `raw_input_contents` (field 7, the last) after every other field, so a
request's bytes are a prefix (model, id, parameters, input and output descriptions) followed by one
length-delimited entry per input. Requests from a client sending same-shaped tensors share the
prefix byte for byte. The plan is exact: a request that has the plan's prefix, length and entry
headers parses, by protobuf's own rules (a message's bytes are the merge of its parts), to the
plan's fields plus those entries, so a hit decodes to what `codec.decode_infer_request` gives.
Anything else (shared memory, typed contents, another layout) takes the protobuf path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2

from packserve.frontends.grpc import codec, tensors
from packserve.frontends.request_fields import RequestFields
from packserve.messages import InferRequest, InferResponse

_RAW_INPUT_TAG = b"\x3a"  # ModelInferRequest field 7, length-delimited
_RAW_OUTPUT_TAG = b"\x32"  # ModelInferResponse field 6, length-delimited
_ID_TAG = b"\x1a"  # ModelInferResponse field 3
_PLANS_PER_LENGTH = 8
# Prefixes up to this size are kept (as the HTTP decoder's JSON headers): at most 16 MiB of plans.
_CACHED_PREFIX_BYTES = 4096
_CACHED_LENGTHS = 512
_CACHED_HEADS = 512


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _entry_header(tag: bytes, size: int) -> bytes:
    return tag + varint(size)


_OUTPUT_HEADERS: dict[int, bytes] = {}  # output entry size -> its tag and length, as sizes recur


def _output_header(size: int) -> bytes:
    header = _OUTPUT_HEADERS.get(size)
    if header is None:
        header = _entry_header(_RAW_OUTPUT_TAG, size)
        if len(_OUTPUT_HEADERS) < _CACHED_HEADS:
            _OUTPUT_HEADERS[size] = header
    return header


@dataclass(frozen=True, slots=True)
class _RawInput:
    name: str
    datatype: tensors.WireType
    shape: tuple[int, ...]
    count: int
    header_at: int  # where the entry's tag and length start
    header: bytes
    data_at: int
    size: int


@dataclass(frozen=True, slots=True)
class RequestPlan:
    prefix: bytes
    inputs: tuple[_RawInput, ...]
    model: str
    version: str
    fields: RequestFields

    def matches(self, payload: bytes) -> bool:
        return payload.startswith(self.prefix) and all(
            payload.startswith(entry.header, entry.header_at) for entry in self.inputs
        )

    def decode(self, payload: bytes) -> InferRequest:
        inputs: dict[str, Any] = {}
        for entry in self.inputs:
            wire = entry.datatype
            if wire.is_bytes:  # element lengths differ per request: checked each time
                raw = payload[entry.data_at : entry.data_at + entry.size]
                inputs[entry.name] = tensors.decode_raw(
                    self.model, entry.name, wire, entry.shape, entry.count, raw, self.fields.request_id
                )
            else:  # a read-only view of the message's bytes, as np.frombuffer gives
                inputs[entry.name] = np.ndarray(entry.shape, wire.numpy, payload, entry.data_at)
        return self.fields.request(self.model, self.version, inputs)

    def detail(self) -> str:
        """Its inputs' names, types and shapes, as --log-verbose=2 shows a call's."""
        return " ".join(
            f"{entry.name}:{entry.datatype.wire_name}{list(entry.shape)}" for entry in self.inputs
        )


class WireCodec:
    """Plans for the request layouts seen, by message length (a few per length), and the encoded
    heads of the answers (model, version and output descriptions), so that a steady stream of
    same-shaped requests is decoded and answered without building protobuf messages."""

    def __init__(self) -> None:
        self._plans: dict[int, list[RequestPlan]] = {}
        self._heads: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}

    def plan_for(self, payload: bytes) -> RequestPlan | None:
        """The plan of the request's layout; None sends it down the protobuf path."""
        for plan in self._plans.get(len(payload), ()):
            if plan.matches(payload):
                return plan
        return None

    def learn(self, payload: bytes, message: Any, request: InferRequest) -> None:
        """Keep a plan for `payload`'s layout, from its protobuf decode that succeeded (`request`),
        when its tensors are all raw entries at the end of the message and no output goes to
        shared memory (the caller's check)."""
        raw_contents = message.raw_input_contents
        if not raw_contents or len(raw_contents) != len(message.inputs):
            return
        entries: list[_RawInput] = []
        headers = [_entry_header(_RAW_INPUT_TAG, len(raw)) for raw in raw_contents]
        position = len(payload) - sum(map(len, headers)) - sum(map(len, raw_contents))
        prefix_end = position
        if prefix_end > _CACHED_PREFIX_BYTES:
            return
        for tensor, raw, header in zip(message.inputs, raw_contents, headers, strict=True):
            if tensor.parameters:  # shared memory and per-tensor options: the full path each time
                return
            data_at = position + len(header)
            if not payload.startswith(header, position) or payload[data_at : data_at + len(raw)] != raw:
                return  # the raw entries are not last: another writer's field order
            shape = tuple(tensor.shape)
            entries.append(
                _RawInput(
                    tensor.name, tensors.parse_datatype(request.model_name, tensor.name, tensor.datatype),
                    shape, math.prod(shape), position, header, data_at, len(raw),
                )
            )  # fmt: skip
            position = data_at + len(raw)
        prefix = payload[:prefix_end]
        try:
            head = service_pb2.ModelInferRequest.FromString(prefix)
        except Exception:
            return
        if head.raw_input_contents:
            return
        plan = RequestPlan(
            prefix=prefix,
            inputs=tuple(entries),
            model=request.model_name,
            version=request.model_version,
            fields=RequestFields.of(request),
        )
        same_length = self._plans.get(len(payload))
        if same_length is None:
            if len(self._plans) >= _CACHED_LENGTHS:
                del self._plans[next(iter(self._plans))]  # the oldest
            same_length = self._plans[len(payload)] = []
        if len(same_length) >= _PLANS_PER_LENGTH:
            del same_length[0]
        same_length.append(plan)

    def encode(self, response: InferResponse) -> bytes:
        """The ModelInferResponse's bytes, as protobuf would write them (fields in number order);
        a response with parameters (rare) is built by `codec.encode_infer_response`."""
        if response.parameters:
            return codec.encode_infer_response(response).SerializeToString()
        model = response.model_name
        described: list[tuple[str, str, tuple[int, ...]]] = []
        contents: list[bytes] = []
        for name, tensor in response.outputs.items():
            array = tensors.to_numpy(model, name, tensor)
            datatype, raw = tensors.encode_output(model, name, array)
            described.append((name, datatype, array.shape))
            contents.append(_output_header(len(raw)))
            contents.append(raw)
        key = (model, response.model_version, tuple(described))
        head = self._heads.get(key)
        if head is None:
            head = self._heads[key] = _response_head(model, response.model_version, described)
            if len(self._heads) > _CACHED_HEADS:
                del self._heads[next(iter(self._heads))]
        before_id, after_id = head
        if response.id:
            encoded_id = response.id.encode("utf-8")
            return b"".join((before_id, _ID_TAG, varint(len(encoded_id)), encoded_id, after_id, *contents))
        return b"".join((before_id, after_id, *contents))


def _response_head(
    model: str, version: str, described: list[tuple[str, str, tuple[int, ...]]]
) -> tuple[bytes, bytes]:
    """Fields 1-2 (model, version) and field 5 (the output descriptions) of the answer, serialized
    by protobuf itself; the id (field 3) goes between them."""
    names = service_pb2.ModelInferResponse(model_name=model, model_version=version).SerializeToString()
    outputs = service_pb2.ModelInferResponse()
    for name, datatype, shape in described:
        outputs.outputs.add(name=name, datatype=datatype, shape=shape)
    return names, outputs.SerializeToString()
