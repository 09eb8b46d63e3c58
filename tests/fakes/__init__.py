"""The one package of test fakes and helpers, imported everywhere as `from tests.fakes.<module> import ...`.

- engine:         FakeEngine, the in-memory engine behind the HTTP and gRPC front-end tests
- http_client:    HttpCaller, one HTTP request through the production door without a socket
- registry:       BackendRegistry, behind the `backend_registry` fixture (tests/conftest.py)
- double_backend: the "fake_double" backend real-engine tests load from a repository
- core:           specs, requests, a doubling instance and a recording observer for the core
- config:         fake backends and model folders for the config tests
- backends:       a backend's ModelContext as the loader builds it, a recording timer
- image:          specs and synthetic photos for the image backend tests
"""
