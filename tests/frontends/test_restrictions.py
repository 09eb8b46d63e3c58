from __future__ import annotations

import pytest

from packserve.frontends.restrictions import Restrictions, http_category


@pytest.mark.parametrize(
    "path,category",
    [("/v2", "metadata"), ("/v2/health/ready", "health"), ("/v2/models/m/ready", "health"),
     ("/v2/models/m", "metadata"), ("/v2/models/m/versions/2/infer", "inference"),
     ("/v2/models/m/config", "model-config"), ("/v2/models/stats", "statistics"),
     ("/v2/models/m/stats", "statistics"), ("/v2/repository/index", "model-repository"),
     ("/v2/systemsharedmemory/status", "shared-memory"), ("/v2/trace/setting", "trace"),
     ("/v2/logging", "logging"), ("/metrics", "")],
)  # fmt: skip
def test_http_categories_follow_triton(path: str, category: str) -> None:
    assert http_category(path) == category


def test_rules_parse_and_check() -> None:
    rules = Restrictions.parse(["model-repository,statistics:Admin-Key=s3cret", "inference:k=v"], "--flag")
    assert (
        rules.http_refusal("/v2/repository/index", [])
        == "This API is restricted, expecting header 'admin-key'"
    )
    assert rules.http_refusal("/v2/repository/index", [(b"admin-key", b"s3cret")]) is None
    assert rules.http_refusal("/v2/repository/index", [(b"admin-key", b"wrong")]) is not None
    assert rules.http_refusal("/v2/health/live", []) is None
    method = "/inference.GRPCInferenceService/RepositoryModelLoad"
    assert rules.grpc_refusal(method, [("triton-grpc-protocol-admin-key", "s3cret")]) is None
    assert rules.grpc_refusal(method, [("admin-key", "s3cret")]) == (
        "This protocol is restricted, expecting header 'triton-grpc-protocol-admin-key'"
    )
    assert not Restrictions.parse([], "--flag")


@pytest.mark.parametrize(
    "spec,problem",
    [("model-repository", "expected"), ("bogus:k=v", "unknown category 'bogus'"), (":k=v", "expected"),
     ("health:=v", "expected")],
)  # fmt: skip
def test_bad_specs_name_the_problem(spec: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Restrictions.parse([spec], "--http-restricted-api")


def test_a_category_restricted_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="more than once"):
        Restrictions.parse(["health:a=1", "health,metadata:b=2"], "--http-restricted-api")
