#!/usr/bin/env python3
"""Applications of the e2e "pods" (tests/e2e/src/netns.rs), run inside their network
namespaces. Unchanged applications: they know nothing of the sidecar.

usage: pod.py http NAME PORT        HTTP server on 0.0.0.0:PORT answering every GET with NAME
       pod.py tcp NAME PORT         TCP server on 0.0.0.0:PORT: reads a line, answers "NAME\\n"
       pod.py tcp-client HOST PORT  connects, sends a line, prints the answer (exit 1 on error)
"""
import http.server
import socket
import socketserver
import sys


def http_server(name, port):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"{name}\n".encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.send_header("x-upstream", name)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


def tcp_server(name, port):
    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            if self.rfile.readline():
                self.wfile.write(f"{name}\n".encode())

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer(("0.0.0.0", port), Handler).serve_forever()


def tcp_client(host, port):
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"hello\n")
            answer = s.makefile().readline()
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    if not answer:
        print("error: closed without an answer", file=sys.stderr)
        sys.exit(1)
    print(answer.strip())


if __name__ == "__main__":
    mode, a, b = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"http": http_server, "tcp": tcp_server, "tcp-client": tcp_client}[mode](a, b)
