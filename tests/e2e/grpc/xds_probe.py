"""Real gRPC for the e2e tests: upstream servers that answer with their own name, and a
proxyless client (grpcio's xDS resolver, GRPC_XDS_BOOTSTRAP) driven over stdin.

  xds_probe.py serve NAME      serves /portolan.test.Echo/Who on 127.0.0.1:0; prints the port
  xds_probe.py client TARGET   reads "call N" lines; makes N RPCs to TARGET (e.g.
                               xds:///echo.default:50051) and prints one JSON line of
                               {reply or "error:CODE": count} (stopping at the first error)

No generated stubs: requests and replies are raw bytes.
"""

import json
import sys
from concurrent import futures

import grpc

METHOD = "/portolan.test.Echo/Who"


def serve(name):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        "portolan.test.Echo",
        {"Who": grpc.unary_unary_rpc_method_handler(lambda req, ctx: name.encode())},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    # Runs until stdin closes (the test drops its handle) or the process is killed.
    sys.stdin.read()
    server.stop(0)


def client(target):
    channel = grpc.insecure_channel(target)
    call = channel.unary_unary(METHOD)
    for line in sys.stdin:
        words = line.split()
        if len(words) != 2 or words[0] != "call":
            continue
        counts = {}
        for _ in range(int(words[1])):
            try:
                reply = call(b"", timeout=5).decode()
            except grpc.RpcError as e:
                # Stop at the first failure (e.g. before xDS has answered): the test retries.
                reply = "error:" + e.code().name
                counts[reply] = counts.get(reply, 0) + 1
                break
            counts[reply] = counts.get(reply, 0) + 1
        print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    {"serve": serve, "client": client}[sys.argv[1]](sys.argv[2])
