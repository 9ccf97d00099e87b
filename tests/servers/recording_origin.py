#!/usr/bin/env python3
"""A recording HTTP/1.1 origin for ferry's proxy tests: logs every request's full header block.

    python3 tests/servers/recording_origin.py --log LOG [--cert LEAF.pem --key LEAF.key]

- Listens on 127.0.0.1 (and on ::1 with the same port when the machine has IPv6 loopback) on a
  kernel-chosen port for plain HTTP and, with --cert/--key, on a second such port for HTTPS
  (Python's ssl module, TLS 1.2 and 1.3). The first stdout line is `PORT <http> <https or 0>`.
- `--log`: one JSON object per request (ASCII, one line, appended and flushed after the response
  is sent): {"conn": n, "tls": bool, "port": listener port, "method": ..., "target": request
  target as sent, "version": "HTTP/1.1", "headers": [[name, value], ...] (in order, names as
  sent), "body_len": n}. `conn` counts TCP connections from 1 across both listeners.
- Responses (keep-alive, always with Content-Length):
  - `/redirect?to=URL` (URL percent-decoded): 302 with `Location: URL`, body `redirect`;
  - `/status/NNN`: status NNN, body `status NNN` (no body for 1xx, 204, 304);
  - anything else: 200, body `ok`.
- Bounds: request line and header lines 64 KiB each, at most 100 headers (http.server), request
  bodies at most 16 MiB (Content-Length or chunked, read and discarded), idle connections closed
  after 60 s, TLS handshakes limited to 10 s.
"""

import argparse
import itertools
import json
import socket
import ssl
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 16 * 1024 * 1024
MAX_CHUNK_LINE = 4096
IDLE_TIMEOUT = 60
HANDSHAKE_TIMEOUT = 10

_conn_ids = itertools.count(1)
_conn_lock = threading.Lock()
_log_lock = threading.Lock()


class BodyError(Exception):
    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ferry-recording-origin"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def setup(self):
        ctx = self.server.ssl_ctx
        if ctx is not None:
            self.request.settimeout(HANDSHAKE_TIMEOUT)
            self.request = ctx.wrap_socket(self.request, server_side=True)
        super().setup()
        with _conn_lock:
            self.conn_id = next(_conn_ids)

    def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
        sys.stderr.write("conn=%s %s\n" % (getattr(self, "conn_id", "?"), format % args))

    def log_request(self, code="-", size="-"):
        pass

    def read_body(self):
        """Reads and discards the request body; returns its length."""
        te = self.headers.get("Transfer-Encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise BodyError(501, "unsupported Transfer-Encoding")
            total = 0
            while True:
                line = self.rfile.readline(MAX_CHUNK_LINE + 1)
                if len(line) > MAX_CHUNK_LINE or not line.endswith(b"\n"):
                    raise BodyError(400, "bad chunk size line")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BodyError(400, "bad chunk size") from None
                if size == 0:
                    for _ in range(100):
                        t = self.rfile.readline(MAX_CHUNK_LINE + 1)
                        if t in (b"\r\n", b"\n", b""):
                            return total
                    raise BodyError(400, "too many trailer lines")
                total += size
                if total > MAX_BODY:
                    raise BodyError(413, "body too large")
                self.read_exactly(size + 2)
        length = self.headers.get("Content-Length")
        if length is None:
            return 0
        try:
            n = int(length.strip())
        except ValueError:
            raise BodyError(400, "bad Content-Length") from None
        if n < 0:
            raise BodyError(400, "bad Content-Length")
        if n > MAX_BODY:
            raise BodyError(413, "body too large")
        self.read_exactly(n)
        return n

    def read_exactly(self, n):
        while n > 0:
            got = self.rfile.read(min(n, 65536))
            if not got:
                raise BodyError(400, "body ended early")
            n -= len(got)

    def respond(self, status, body, extra=()):
        data = body.encode("utf-8")
        no_body = status < 200 or status in (204, 304)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        if not no_body:
            self.send_header("Content-Length", str(len(data)))
        for name, value in extra:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and not no_body:
            self.wfile.write(data)
        self.wfile.flush()

    def write_log(self, body_len):
        record = {
            "conn": self.conn_id,
            "tls": self.server.ssl_ctx is not None,
            "port": self.server.server_address[1],
            "method": self.command,
            "target": self.path,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.raw_items()],
            "body_len": body_len,
        }
        line = json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n"
        with _log_lock:
            with open(self.server.log_path, "a", encoding="ascii") as f:
                f.write(line)
                f.flush()

    def handle_any(self):
        try:
            body_len = self.read_body()
        except BodyError as e:
            self.close_connection = True
            self.respond(e.status, e.reason + "\n")
            self.write_log(-1)
            return
        path, _, query = self.path.partition("?")
        if "://" in path:  # absolute form: look at the path part only
            path = urllib.parse.urlsplit(self.path).path or "/"
            query = urllib.parse.urlsplit(self.path).query
        if path == "/redirect":
            to = urllib.parse.parse_qs(query).get("to", [""])[0]
            self.respond(302, "redirect", [("Location", to)])
        elif path.startswith("/status/") and path[8:].isdigit() and len(path) == 11:
            code = int(path[8:])
            if 200 <= code <= 599:
                self.respond(code, "status %d" % code)
            else:
                self.respond(400, "bad status\n")
        else:
            self.respond(200, "ok")
        self.write_log(body_len)

    do_GET = handle_any
    do_HEAD = handle_any
    do_POST = handle_any
    do_PUT = handle_any
    do_DELETE = handle_any
    do_PATCH = handle_any
    do_OPTIONS = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 64

    def handle_error(self, request, client_address):
        # TLS handshake failures, resets: one line, not a traceback.
        sys.stderr.write("connection error: %r\n" % (sys.exc_info()[1],))


class Server6(Server):
    address_family = socket.AF_INET6


def make_servers(ssl_ctx, log_path):
    """Binds 127.0.0.1 on a free port and, when possible, ::1 on the same port."""
    last = None
    for _ in range(20):
        s4 = Server(("127.0.0.1", 0), Handler)
        port = s4.server_address[1]
        servers = [s4]
        try:
            s6 = Server6(("::1", port), Handler)
            servers.append(s6)
        except OSError as e:
            last = e
            if e.errno in (97, 99):  # no IPv6 at all: 127.0.0.1 only
                pass
            else:  # port taken on ::1: try another
                s4.server_close()
                continue
        for s in servers:
            s.ssl_ctx = ssl_ctx
            s.log_path = log_path
        return port, servers
    raise SystemExit("could not bind a port on both 127.0.0.1 and ::1: %r" % (last,))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    open(args.log, "a", encoding="ascii").close()

    http_port, servers = make_servers(None, args.log)
    https_port = 0
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.cert, args.key)
        https_port, more = make_servers(ctx, args.log)
        servers += more
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    sys.stdout.write("PORT %d %d\n" % (http_port, https_port))
    sys.stdout.flush()
    try:
        servers[0].serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
