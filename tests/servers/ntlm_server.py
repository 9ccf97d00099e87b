#!/usr/bin/env python3
"""An NTLM-protected HTTP/1.1 test server for ferry's end-to-end tests (IIS-style, keep-alive).

NTLM itself is pyspnego's (an implementation independent of ferry's): this file only moves the
tokens between HTTP headers and a per-connection `spnego.server(protocol="ntlm")` context.

    python3 tests/servers/ntlm_server.py --port 0 --users USERS --log LOG

- Binds 127.0.0.1 only. With `--port 0` the kernel picks the port; either way the first line on
  stdout is `PORT <n>` (flushed), so a harness learns it.
- `--users`: `DOMAIN:USER:PASSWORD` per line (pyspnego's `NTLM_USER_FILE` format; the domain may be
  empty). Lookups are case-insensitive (pyspnego's); the success body and the log use the file's
  spelling (pyspnego itself would report the client's).
- `--log`: one line per request, appended and flushed:
  `conn=<n> user=<DOMAIN\\user or -> status=<code> path=<path> auth=<none|type1|type3|other>`
  (`conn` counts TCP connections from 1; `other` is any Authorization header that is not an NTLM
  negotiate/authenticate message: Basic, Negotiate, bad base64, ...).

Per connection (one handler instance per TCP connection, so the NTLM context lives there):
- `/anon` (any query): 200 `anonymous`, whatever the connection's state; logged with `user=-`.
- no Authorization: 200 `hello <DOMAIN\\user>` if the connection has authenticated, otherwise 401
  with `WWW-Authenticate: NTLM`.
- `Authorization: NTLM <type 1>`: a fresh context (the connection forgets any earlier user), 401
  with `WWW-Authenticate: NTLM <type 2>`.
- `Authorization: NTLM <type 3>`: pyspnego verifies it; success: 200 `hello <DOMAIN\\user>` and the
  connection is authenticated as that user from now on; failure: 401 `WWW-Authenticate: NTLM` and
  the connection's state is reset.
- any other Authorization: 401 `WWW-Authenticate: NTLM`, state reset.

Only NTLMv2 responses are accepted: the acceptor runs with LM_COMPAT_LEVEL=5, so NTLMv1 and LM
responses (including NTLMv1 with extended session security) are rejected. (pyspnego's default
level, 3, would accept NTLMv1 from the acceptor's side.)

Every response has a Content-Length body and keeps the connection open (unless the client asked
to close). Bounds: request line and header lines 64 KiB each and at most 100 headers (http.server),
request bodies at most 16 MiB (Content-Length or chunked, drained before answering), idle
connections closed after 60 s.
"""

import base64
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ntlm_common import (  # noqa: E402 (after the sys.path entry it needs)
    MAX_BODY,
    MAX_CHUNK_LINE,
    IDLE_TIMEOUT,
    BodyError,
    NtlmConnection,
    UserFile,
    main,
    ntlm_message_type,
    spnego,
)
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402


class Handler(NtlmConnection, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ferry-ntlm-test"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def write_log(self, status, user, auth):
        path = self.path.split("?", 1)[0]
        line = "conn=%d user=%s status=%d path=%s auth=%s\n" % (
            self.conn_id,
            user or "-",
            status,
            path,
            auth,
        )
        self.append_log(line)

    def drain_body(self):
        """Reads and discards the request body (Content-Length or chunked), bounded."""
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
                    # Trailer section: lines until the empty one, bounded.
                    for _ in range(100):
                        t = self.rfile.readline(MAX_CHUNK_LINE + 1)
                        if t in (b"\r\n", b"\n", b""):
                            return
                    raise BodyError(400, "too many trailer lines")
                total += size
                if total > MAX_BODY:
                    raise BodyError(413, "body too large")
                self.read_exactly(size + 2)
        length = self.headers.get("Content-Length")
        if length is None:
            return
        try:
            n = int(length.strip())
        except ValueError:
            raise BodyError(400, "bad Content-Length") from None
        if n < 0:
            raise BodyError(400, "bad Content-Length")
        if n > MAX_BODY:
            raise BodyError(413, "body too large")
        self.read_exactly(n)

    def read_exactly(self, n):
        while n > 0:
            got = self.rfile.read(min(n, 65536))
            if not got:
                raise BodyError(400, "body ended early")
            n -= len(got)

    def respond(self, status, body, www_authenticate=None):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if www_authenticate is not None:
            self.send_header("WWW-Authenticate", www_authenticate)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    # --- the exchange -----------------------------------------------------------------------

    def handle_any(self):
        auth_header = self.headers.get("Authorization")
        kind, token = ("none", None) if auth_header is None else ntlm_message_type(auth_header)
        try:
            self.drain_body()
        except BodyError as e:
            self.close_connection = True
            self.respond(e.status, e.reason + "\n")
            self.write_log(e.status, None, kind)
            return

        if self.path.split("?", 1)[0] == "/anon":
            self.respond(200, "anonymous")
            self.write_log(200, None, kind)
            return

        if kind == "none":
            if self.user is not None:
                self.respond(200, "hello %s" % self.user)
                self.write_log(200, self.user, kind)
            else:
                self.respond(401, "unauthorized\n", "NTLM")
                self.write_log(401, None, kind)
            return

        if kind == "type1":
            self.reset_auth()
            try:
                ctx = spnego.server(
                    protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm
                )
                challenge = ctx.step(token)
            except Exception as e:  # noqa: BLE001 (any pyspnego failure is a 401)
                self.log_message("type 1 rejected: %r", e)
                self.respond(401, "bad negotiate message\n", "NTLM")
                self.write_log(401, None, kind)
                return
            self.ntlm_ctx = ctx
            self.respond(
                401,
                "challenge\n",
                "NTLM " + base64.b64encode(challenge).decode("ascii"),
            )
            self.write_log(401, None, kind)
            return

        if kind == "type3" and self.ntlm_ctx is not None:
            ctx = self.ntlm_ctx
            self.ntlm_ctx = None
            try:
                ctx.step(token)
                user = ctx.client_principal if ctx.complete else None
            except Exception as e:  # noqa: BLE001 (wrong password, unknown user, NTLMv1, ...)
                self.log_message("type 3 rejected: %r", e)
                user = None
            if user:
                user = self.server.canonical_user(user)
                self.user = user
                self.respond(200, "hello %s" % user)
                self.write_log(200, user, kind)
                return

        # A failed type 3, a type 3 without a type 1 on this connection, or a foreign scheme.
        self.reset_auth()
        self.respond(401, "unauthorized\n", "NTLM")
        self.write_log(401, None, kind)

    do_GET = handle_any
    do_HEAD = handle_any
    do_POST = handle_any
    do_PUT = handle_any
    do_DELETE = handle_any
    do_PATCH = handle_any
    do_OPTIONS = handle_any


class Server(UserFile, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 64


if __name__ == "__main__":
    main(Server, Handler, __doc__.splitlines()[0])
