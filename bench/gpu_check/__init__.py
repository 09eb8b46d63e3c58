"""The GPU proof kit (scripts/gpu_check.sh): see bench/README.md "GPU check"."""
