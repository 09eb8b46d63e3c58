"""The benchmark suite: packserve's served throughput against the raw limit of its own backends.

    python -m bench.suite --model-repository R --models simple,image_classifier

See bench/README.md for what it measures and how to read the results.
"""
