"""The files and quantities every part of planning shares: the profile file, the plan file, config
patches in Triton's JSON form, and the text forms of loads, durations and sizes.

Imports nothing else of planning. `packserve.cli.serve` parses `--max-memory` with `units`, so
this package must stay light: no planning extra (OR-Tools, SimPy, matplotlib) on import.
"""
