"""packserve: pack many small vision models onto one GPU and serve them as one pipeline.

`import packserve` stays light: optional parts (torch, onnxruntime-gpu, NVML, image libraries) are
imported by name on first use through `packserve.backends.registry`.
"""

__version__ = "0.1.0"
# The name and version reported by `GET /v2` and ServerMetadata. Clients only read them for display.
SERVER_NAME = "packserve"
