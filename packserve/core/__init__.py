"""The core: repository and lifecycle, schedulers, instances, ensembles. Knows nothing of HTTP/gRPC."""
