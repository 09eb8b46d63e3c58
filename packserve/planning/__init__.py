"""Capacity planning: profiler, planner, simulator and Kubernetes output.

Only the CLI imports this package; its modules pull in the `planning` extra (OR-Tools, SimPy,
matplotlib) on import, so nothing on the serving path may depend on it.
"""
