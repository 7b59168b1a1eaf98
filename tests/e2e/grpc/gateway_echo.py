"""gRPC for the Gateway API conformance runner (GATEWAY-GRPC): echo servers in the shape of
the conformance suite's (service gateway_api_conformance.grpc_echo.grpcecho.GrpcEcho, methods
Echo, EchoTwo and EchoThree), and a client that calls them through a Gateway.

  gateway_echo.py serve NAME [CERT KEY]
                                 serves on 127.0.0.1:0 (with CERT and KEY, PEM files: over
                                 TLS); prints the port; every reply is the
                                 JSON {"name": NAME, "metadata": {KEY: [VALUE, ...]}} of the
                                 request metadata the server saw
  gateway_echo.py serve-on ADDR NAME
                                 serves NAME in plaintext on ADDR (HOST:PORT, e.g. in a pod of
                                 the GAMMA runner, tests/e2e/cases/gateway_api_mesh.rs) until
                                 killed
  gateway_echo.py client ADDR [CA]
                                 (with CA, a PEM file: TLS trusting only it, the SNI being
                                 the call's authority) reads lines "call METHOD AUTHORITY N [KEY=VALUE ...]"; makes N
                                 calls of METHOD to ADDR (plaintext HTTP/2) with that
                                 :authority and metadata, and prints one JSON line
                                 {"counts": {NAME or "error:CODE": count}, "metadata": the
                                 metadata the last answering server saw}

No generated stubs: requests and replies are raw bytes (an empty EchoRequest is zero bytes).
"""

import json
import sys
from concurrent import futures

import grpc

SERVICE = "gateway_api_conformance.grpc_echo.grpcecho.GrpcEcho"
METHODS = ("Echo", "EchoTwo", "EchoThree")


def echo_server(name):
    """A server (not started) answering every method of SERVICE with what it saw."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    def answer(request, context):
        seen = {}
        for key, value in context.invocation_metadata():
            seen.setdefault(key, []).append(value)
        return json.dumps({"name": name, "metadata": seen}).encode()

    reply = grpc.unary_unary_rpc_method_handler(answer)
    handler = grpc.method_handlers_generic_handler(SERVICE, {m: reply for m in METHODS})
    server.add_generic_rpc_handlers((handler,))
    return server


def serve(name, cert=None, key=None):
    server = echo_server(name)
    if cert is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        with open(cert, "rb") as c, open(key, "rb") as k:
            credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    print(port, flush=True)
    # Runs until stdin closes (the test drops its handle) or the process is killed.
    sys.stdin.read()
    server.stop(0)


def serve_on(addr, name):
    server = echo_server(name)
    server.add_insecure_port(addr)
    server.start()
    print(f"serving {name} on {addr}", flush=True)
    server.wait_for_termination()


def channel(addr, authority, ca):
    options = [("grpc.default_authority", authority)]
    if ca is None:
        return grpc.insecure_channel(addr, options=options)
    with open(ca, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    options.append(("grpc.ssl_target_name_override", authority))
    return grpc.secure_channel(addr, credentials, options=options)


def client(addr, ca=None):
    channels = {}
    for line in sys.stdin:
        words = line.split()
        if len(words) < 4 or words[0] != "call":
            continue
        method, authority, n = words[1], words[2], int(words[3])
        metadata = tuple(tuple(w.split("=", 1)) for w in words[4:])
        if authority not in channels:
            channels[authority] = channel(addr, authority, ca)
        call = channels[authority].unary_unary(f"/{SERVICE}/{method}")
        counts, seen = {}, {}
        for _ in range(n):
            try:
                answer = json.loads(call(b"", timeout=5, metadata=metadata))
                reply, seen = answer["name"], answer["metadata"]
            except grpc.RpcError as e:
                reply = "error:" + e.code().name
            counts[reply] = counts.get(reply, 0) + 1
        print(json.dumps({"counts": counts, "metadata": seen}), flush=True)


if __name__ == "__main__":
    {"serve": serve, "serve-on": serve_on, "client": client}[sys.argv[1]](*sys.argv[2:])
