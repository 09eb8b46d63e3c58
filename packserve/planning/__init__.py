"""Capacity planning: profiler, planner, simulator and Kubernetes output.

Only the CLI imports this package; its modules pull in the `planning` extra (OR-Tools, SimPy,
matplotlib) on import, so nothing on the serving path may depend on it.

Four parts, layered (`.importlinter` checks it):
- `commands`: what each planning command does, from an options object to files on disk;
- `profiling/` starts an engine (and an HTTP server) and measures models: the profile's source;
  `output/` writes what people and clusters read: Kubernetes manifests, the report, plots.
  The two never import each other;
- `capacity/`: the pure part, profile in, plan and simulated latencies out: workload, duty cycle,
  placement, replication, planner, simulator, plan check, fleet search. No servers, no files;
- `formats/`: the files and quantities the others share: the profile and plan files, config
  patches, units. Imports nothing above it.
"""
