"""Run every conformance case through a live server and the references; print the agreement
table (markdown) that docs/vision-stack.md carries.

    PYTHONPATH=. .venv/bin/python tests/conformance/agreement_table.py [--cases a,b] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from packserve.demo.build import build_vision_stack
from tests.conformance.conformance_cases import all_cases
from tests.conformance.conformance_compare import MODELS, compare, serve
from tests.conformance.conformance_refs import reference
from tests.e2e.e2e_server import start_live_server


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default="", help="comma list of case names (default: all)")
    parser.add_argument("--json", default="", help="also write the raw results here")
    args = parser.parse_args()
    wanted = {c for c in args.cases.split(",") if c}
    cases = [c for c in all_cases() if not wanted or c.name in wanted]
    with tempfile.TemporaryDirectory() as tmp:
        repository = build_vision_stack(Path(tmp) / "repo", progress=False)
        server = start_live_server(repository, Path(tmp))
        rows = []
        try:
            for case in cases:
                start = time.perf_counter()
                served = serve(server.http_base, case.data)
                served_s = time.perf_counter() - start
                ref = reference(case)
                results = compare(served, ref)
                rows.append(
                    (case, results, ref.decode_note, served_s, time.perf_counter() - start - served_s)
                )
        finally:
            server.terminate()
    print("| case | " + " | ".join(MODELS) + " | reference decode |")
    print("| --- " * (len(MODELS) + 2) + "|")
    for case, results, notes, _, _ in rows:
        cells = [("yes" if ok else "**no**: " + detail) for ok, detail in (results[m] for m in MODELS)]
        print(
            f"| {case.name} ({case.about}) | "
            + " | ".join(cells)
            + f" | {'; '.join(f'{k}: {v}' for k, v in notes.items()) or 'correct'} |"
        )
    for case, results, _, served_s, ref_s in rows:
        print(
            case.name,
            f"served {served_s:.2f}s ref {ref_s:.2f}s",
            {m: r[1] for m, r in results.items()},
            file=sys.stderr,
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [{"case": c.name, "about": c.about, "results": r, "notes": n} for c, r, n, _, _ in rows],
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
