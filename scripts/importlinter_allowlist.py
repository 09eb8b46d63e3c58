"""An import-linter contract type: a package may import, inside the root package, only the modules
it lists (an allow-list, where the built-in `forbidden` contract is a deny-list that lets every
module added later through).

    [importlinter:contract:name]
    type = allowlist
    source_modules = packserve.frontends
    allowed_modules =
        packserve.core.engine_api
        packserve.messages

A source module may import itself and its own descendants, every allowed module and its
descendants, and anything outside the root package. Direct imports only: an allowed module's own
imports are the other contracts' business.
"""

from __future__ import annotations

import grimp
from importlinter import Contract, ContractCheck, fields, output


def _within(module: str, packages: list[str]) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


class AllowListContract(Contract):
    type_name = "allowlist"

    source_modules = fields.ListField(subfield=fields.StringField())
    allowed_modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        sources: list[str] = list(self.source_modules)  # type: ignore[call-overload]
        allowed: list[str] = list(self.allowed_modules)  # type: ignore[call-overload]
        roots = {source.split(".")[0] for source in sources}
        illegal: list[dict[str, object]] = []
        for importer in sorted(graph.modules):
            if not _within(importer, sources):
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                if imported.split(".")[0] not in roots or _within(imported, sources + allowed):
                    continue
                details = graph.get_import_details(importer=importer, imported=imported)
                lines = sorted({detail["line_number"] for detail in details})
                illegal.append({"importer": importer, "imported": imported, "lines": lines})
        return ContractCheck(kept=not illegal, metadata={"illegal": illegal})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for item in check.metadata["illegal"]:
            lines = ", ".join(str(line) for line in item["lines"])
            edge = f"{item['importer']} -> {item['imported']}"
            output.print_error(f"{edge} (line {lines}) is not in the allow-list")
            output.new_line()
