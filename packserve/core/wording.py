"""Triton's wording for errors its own tests and some clients compare as text.

packserve keeps its extra detail after Triton's sentence, so a client matching on Triton's text
(a prefix or a substring) still matches.
"""

from __future__ import annotations

# Request parameters with this prefix are Triton's own; a client may not send them.
RESERVED_PREFIX = "triton_"
RESERVED_MESSAGE = (
    "parameter keys starting with 'triton_' are reserved for Triton usage and should not be specified."
)


def triton_request_prefix(request_id: str) -> str:
    """The `[request id: ...]` label Triton puts before a request's validation errors."""
    return f"[request id: {request_id or '<id_unknown>'}]"


def missing_inputs_message(
    model: str, required: int, total: int, got: list[str], missing: list[str], request_id: str
) -> str:
    expected = f"{required}" if required == total else f"number of inputs between {required} and {total}"
    return (
        f"{triton_request_prefix(request_id)} expected {expected} inputs but got {len(got)} inputs for "
        f"model '{model}'. Got input(s) {_names(got)}, but missing required input(s) {_names(missing)}. "
        "Please provide all required input(s)."
    )


def _names(names: list[str]) -> str:
    return "[" + ", ".join(f"'{name}'" for name in names) + "]"
