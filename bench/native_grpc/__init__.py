"""Evidence for issue 17 item 8: a native gRPC transport (HTTP/2 h2c + gRPC framing by hand, HPACK
by the `hpack` package) serving packserve's own gRPC servicers on the server's event loop.

Kept under bench/, not in packserve: the go/no-go measurement (bench/README.md, "HTTP vs gRPC on
the same server") found it 1.7-2.9x grpc.aio's throughput on `simple` but 0.53-1.03x HTTP's (median
about 0.78) at concurrency 8 and 32 with perf_analyzer's synchronous gRPC client, short of the 0.9x
the issue's plan set for making it the default. The modules are those of the complete transport (flow control,
limits, deadlines, GOAWAY drain, tests) so the figures can be rerun:

    .venv/bin/python bench/grpc_vs_http.py --implementations native,grpcio

`python -m bench.native_grpc.serve serve ...` is `packserve serve` with this transport in place of
grpc.aio on the gRPC port.
"""
