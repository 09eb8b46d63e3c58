"""The allow-list contract type behind .importlinter's front-end rule catches what it must."""

from __future__ import annotations

import grimp

from scripts.importlinter_allowlist import AllowListContract


def _graph(imports: list[tuple[str, str]]) -> grimp.ImportGraph:
    graph = grimp.ImportGraph()
    for importer, imported in imports:
        for module in (importer, imported):
            graph.add_module(module)
        graph.add_import(importer=importer, imported=imported, line_number=3, line_contents="import x")
    return graph


def _check(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    contract = AllowListContract(
        "front ends",
        session_options={"root_packages": ["app"]},
        contract_options={"source_modules": ["app.front"], "allowed_modules": ["app.core.door", "app.data"]},
    )
    result = contract.check(graph, verbose=False)
    illegal = [(item["importer"], item["imported"]) for item in result.metadata["illegal"]]
    assert result.kept == (not illegal)
    return illegal


def test_allowed_modules_own_modules_and_outside_packages_pass() -> None:
    graph = _graph(
        [
            ("app.front.http", "app.core.door"),
            ("app.front.http", "app.data.messages"),  # a descendant of an allowed module
            ("app.front.http", "app.front.codec"),  # its own package
            ("app.front.http", "numpy"),  # outside the root package
        ]
    )
    assert _check(graph) == []


def test_any_other_module_of_the_root_package_is_reported() -> None:
    graph = _graph(
        [
            ("app.front.http", "app.core.door"),
            ("app.front.http", "app.core.repository"),  # a sibling of the door, not allowed
            ("app.front.grpc", "app.core"),  # the allowed module's parent is not allowed either
            ("app.other", "app.core.repository"),  # not a source module: not this contract's business
        ]
    )
    assert _check(graph) == [("app.front.grpc", "app.core"), ("app.front.http", "app.core.repository")]
