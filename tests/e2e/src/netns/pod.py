#!/usr/bin/env python3
"""Applications of the e2e "pods" (tests/e2e/src/netns.rs), run inside their network
namespaces. Unchanged applications: they know nothing of the sidecar.

usage: pod.py http NAME PORT        HTTP server on 0.0.0.0:PORT answering every GET with NAME;
                                    a WebSocket upgrade (RFC 6455) gets an echo of each text
                                    message, prefixed with "NAME: "; a GET with an X-Probe
                                    header gets "NAME PATH X-PROBE" (a health check), and
                                    503 when the path starts with /fail; a GET of /headers
                                    (or /headers/...) gets the request headers as JSON,
                                    {name (lowercase): [values...]}
       pod.py tcp NAME PORT         TCP server on 0.0.0.0:PORT: reads a line, answers "NAME\\n"
       pod.py tcp-client HOST PORT  connects, sends a line, prints the answer (exit 1 on error)
       pod.py ws-client HOST PORT   opens a WebSocket session on /chat, sends two messages and
                                    prints the echoes, one per line (exit 1 on error)
       pod.py http-client           reads JSON lines {"url": URL, "headers": [[NAME, VALUE]...]},
                                    GETs each URL on a new connection (Host from the URL, no
                                    redirect followed) and prints one JSON line per request:
                                    {"status", "headers": [[NAME, VALUE]...], "body"}, or
                                    {"error": WHY}
"""
import base64
import hashlib
import http.client
import http.server
import json
import os
import socket
import socketserver
import struct
import sys
import urllib.parse

# RFC 6455, section 1.3: the key the server's accept value is derived with.
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_read(rfile):
    """One frame's opcode and (unmasked) payload; None when the connection ends."""
    head = rfile.read(2)
    if len(head) < 2:
        return None
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", rfile.read(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", rfile.read(8))[0]
    mask = rfile.read(4) if head[1] & 0x80 else None
    data = rfile.read(length)
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return opcode, data


def ws_frame(opcode, data, masked):
    """A final frame; clients mask theirs (RFC 6455, section 5.3)."""
    head = bytes([0x80 | opcode])
    mask_bit = 0x80 if masked else 0
    if len(data) < 126:
        head += bytes([mask_bit | len(data)])
    else:
        head += bytes([mask_bit | 126]) + struct.pack("!H", len(data))
    if not masked:
        return head + data
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def http_server(name, port):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without TCP_NODELAY the body would wait for
        # the peer's delayed ACK of the headers (up to 40 ms per response).
        disable_nagle_algorithm = True

        def do_GET(self):
            if self.headers.get("Upgrade", "").lower() == "websocket":
                return self.websocket()
            body = f"{name}\n".encode()
            status = 200
            if self.path == "/headers" or self.path.startswith("/headers/"):
                seen = {}
                for key, value in self.headers.items():
                    seen.setdefault(key.lower(), []).append(value)
                body = json.dumps(seen).encode()
            probe = self.headers.get("X-Probe")
            if probe is not None:
                body = f"{name} {self.path} {probe}\n".encode()
                status = 503 if self.path.startswith("/fail") else 200
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.send_header("x-upstream", name)
            self.end_headers()
            self.wfile.write(body)

        def websocket(self):
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            key = self.headers.get("Sec-WebSocket-Key", "")
            self.send_header("Sec-WebSocket-Accept", ws_accept(key))
            self.end_headers()
            self.wfile.flush()
            while (frame := ws_read(self.rfile)) is not None:
                opcode, data = frame
                if opcode == 0x8:  # close: answer it and end
                    self.wfile.write(ws_frame(0x8, data, masked=False))
                    break
                if opcode == 0x1:
                    reply = f"{name}: ".encode() + data
                    self.wfile.write(ws_frame(0x1, reply, masked=False))
                    self.wfile.flush()
            self.close_connection = True

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


def ws_client(host, port):
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /chat HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(request.encode())
            rfile = s.makefile("rb")
            status = rfile.readline().decode().strip()
            headers = {}
            while (line := rfile.readline().decode().strip()):
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            if " 101 " not in f"{status} ":
                raise OSError(f"upgrade refused: {status}")
            if headers.get("sec-websocket-accept") != ws_accept(key):
                raise OSError(f"bad Sec-WebSocket-Accept: {headers}")
            for text in ["hello", "again"]:
                s.sendall(ws_frame(0x1, text.encode(), masked=True))
                frame = ws_read(rfile)
                if frame is None:
                    raise OSError("closed before the echo")
                print(frame[1].decode())
            s.sendall(ws_frame(0x8, b"", masked=True))
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def http_get(url, headers):
    parts = urllib.parse.urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=5)
    try:
        conn.request("GET", path, headers=dict(headers))
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        return {"status": resp.status, "headers": resp.getheaders(), "body": body}
    finally:
        conn.close()


def http_client():
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = http_get(request["url"], request.get("headers", []))
        except (OSError, http.client.HTTPException) as e:
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "http-client":
        http_client()
        sys.exit(0)
    mode, a, b = sys.argv[1], sys.argv[2], int(sys.argv[3])
    modes = {"http": http_server, "tcp": tcp_server, "tcp-client": tcp_client, "ws-client": ws_client}
    modes[mode](a, b)
