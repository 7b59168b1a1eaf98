#!/usr/bin/env python3
"""A tiny HTTP upstream for the demo: answers every GET with its own name.

usage: upstream.py NAME HOST PORT
"""
import http.server
import sys

name, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])


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


http.server.ThreadingHTTPServer((host, port), Handler).serve_forever()
