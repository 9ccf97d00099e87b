#!/usr/bin/env python3
"""An NTLM-authenticating forward proxy for ferry's end-to-end tests (per-connection NTLMv2).

NTLM itself is pyspnego's (independent of ferry's); this file moves the tokens between
`Proxy-Authorization` / `Proxy-Authenticate` headers and a per-connection
`spnego.server(protocol="ntlm")` context, and forwards what it authenticated.

    python3 tests/servers/ntlm_proxy.py --port 0 --users USERS --log LOG

- Binds 127.0.0.1 only; the first stdout line is `PORT <n>` (flushed).
- `--users`: `DOMAIN:USER:PASSWORD` per line (pyspnego's NTLM_USER_FILE format).
- `--log`: one line per request, appended and flushed once the proxy has answered it:
  `conn=<n> user=<DOMAIN\\user or -> method=<m> target=<t> status=<code> auth=<kind>`, where
  `kind` is what the request's Proxy-Authorization held: `none`, `type1`, `type3` or `other`.
  `status` is the status the client got (the origin's for a forwarded request; 200 for an
  established tunnel, logged when the tunnel starts).

Per client TCP connection (IIS/ISA-like, the connection is what authenticates):
- no Proxy-Authorization: forwarded as the connection's user if it has authenticated, otherwise
  407 with `Proxy-Authenticate: NTLM`;
- `NTLM <type 1>`: a fresh handshake (the connection forgets any earlier user), 407 with
  `Proxy-Authenticate: NTLM <type 2>`;
- `NTLM <type 3>`: verified by pyspnego (LM_COMPAT_LEVEL=5: NTLMv2 only); success: the request is
  forwarded and the connection is authenticated as that user from now on; failure: 407
  `Proxy-Authenticate: NTLM`, state reset;
- anything else: 407 `Proxy-Authenticate: NTLM`, state reset.

Forwarding (only to loopback: `localhost`, 127.0.0.0/8, `::1`; other hosts get 403):
- absolute-form `http://` requests: a new origin connection per request (`Connection: close`),
  with the client's headers minus hop-by-hop ones (Proxy-Authorization, Proxy-Connection,
  Connection and the headers it names, Keep-Alive, TE, Trailer, Upgrade) and the body read in
  full (at most 16 MiB); the response is relayed with a Content-Length (bodies at most 64 MiB),
  keeping the client connection open. Origin unreachable: 502. Non-absolute targets: 400.
- `CONNECT host:port`: 200 `Connection established`, then bytes are relayed both ways (one
  thread each way, 60 s idle timeout) until either side closes; the client connection ends
  with the tunnel.

Every 407 has a Content-Length body and keeps the connection open.
"""

import base64
import http.client
import ipaddress
import os
import socket
import sys
import threading
import urllib.parse

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

MAX_RESPONSE_BODY = 64 * 1024 * 1024
CONNECT_TIMEOUT = 10
HOP_BY_HOP = {
    "proxy-authorization",
    "proxy-connection",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
}


def is_loopback(host):
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host_port(authority, default_port):
    """`host:port`, `[v6]:port` or `host` -> (host, port); None when malformed."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return None
        host, rest = authority[1:end], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:] if rest else ""
    else:
        host, _, port = authority.partition(":")
    if not port:
        return (host, default_port) if default_port else None
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


class Handler(NtlmConnection, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ferry-ntlm-proxy"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def write_log(self, status, user, auth):
        line = "conn=%d user=%s method=%s target=%s status=%d auth=%s\n" % (
            self.conn_id,
            user or "-",
            self.command,
            self.path,
            status,
            auth,
        )
        self.append_log(line)

    # --- bodies ---------------------------------------------------------------------------

    def read_body(self):
        """The request body (Content-Length or chunked), bounded; b"" when there is none."""
        te = self.headers.get("Transfer-Encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise BodyError(501, "unsupported Transfer-Encoding")
            parts, total = [], 0
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
                            return b"".join(parts)
                    raise BodyError(400, "too many trailer lines")
                total += size
                if total > MAX_BODY:
                    raise BodyError(413, "body too large")
                parts.append(self.read_exactly(size))
                self.read_exactly(2)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length.strip())
        except ValueError:
            raise BodyError(400, "bad Content-Length") from None
        if n < 0:
            raise BodyError(400, "bad Content-Length")
        if n > MAX_BODY:
            raise BodyError(413, "body too large")
        return self.read_exactly(n)

    def read_exactly(self, n):
        parts = []
        while n > 0:
            got = self.rfile.read(min(n, 65536))
            if not got:
                raise BodyError(400, "body ended early")
            parts.append(got)
            n -= len(got)
        return b"".join(parts)

    # --- responses ------------------------------------------------------------------------

    def respond(self, status, body, extra=()):
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        self.send_response(status)
        has_type = any(k.lower() == "content-type" for k, _ in extra)
        if not has_type:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        if not (status < 200 or status in (204, 304)):
            self.send_header("Content-Length", str(len(data)))
        for name, value in extra:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)
        self.wfile.flush()

    def deny(self, auth, body="proxy authentication required\n", challenge="NTLM"):
        self.respond(407, body, [("Proxy-Authenticate", challenge)])
        self.write_log(407, None, auth)

    # --- the exchange ---------------------------------------------------------------------

    def authenticate(self):
        """Runs the NTLM state machine. Returns (user or None, auth kind); on None the proxy has
        already answered."""
        header = self.headers.get("Proxy-Authorization")
        kind, token = ("none", None) if header is None else ntlm_message_type(header)
        if kind == "none":
            if self.user is None:
                self.deny(kind)
            return self.user, kind
        if kind == "type1":
            self.reset_auth()
            try:
                ctx = spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)
                challenge = ctx.step(token)
            except Exception as e:  # noqa: BLE001
                self.log_message("type 1 rejected: %r", e)
                self.deny(kind, "bad negotiate message\n")
                return None, kind
            self.ntlm_ctx = ctx
            self.deny(kind, "challenge\n", "NTLM " + base64.b64encode(challenge).decode("ascii"))
            return None, kind
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
                self.user = self.server.canonical_user(user)
                return self.user, kind
        self.reset_auth()
        self.deny(kind)
        return None, kind

    def handle_any(self):
        try:
            body = self.read_body()
        except BodyError as e:
            self.close_connection = True
            self.respond(e.status, e.reason + "\n")
            self.write_log(e.status, self.user, "none")
            return
        user, kind = self.authenticate()
        if user is None:
            return
        if self.command == "CONNECT":
            self.tunnel(user, kind)
        else:
            self.forward(user, kind, body)

    def forward(self, user, kind, body):
        url = urllib.parse.urlsplit(self.path)
        if url.scheme.lower() != "http" or not url.netloc:
            self.respond(400, "absolute http:// URL expected\n")
            self.write_log(400, user, kind)
            return
        hp = split_host_port(url.netloc.rpartition("@")[2], 80)
        if hp is None:
            self.respond(400, "bad authority\n")
            self.write_log(400, user, kind)
            return
        host, port = hp
        if not is_loopback(host):
            self.respond(403, "only loopback destinations\n")
            self.write_log(403, user, kind)
            return
        target = url.path or "/"
        if url.query:
            target += "?" + url.query
        named = set()
        for value in self.headers.get_all("Connection") or []:
            named.update(t.strip().lower() for t in value.split(","))
        try:
            conn = http.client.HTTPConnection(host, port, timeout=IDLE_TIMEOUT)
            conn.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.raw_items():
                low = name.lower()
                if low in HOP_BY_HOP or low in named or low == "content-length":
                    continue
                conn.putheader(name, value)
            if body or self.headers.get("Content-Length") is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.putheader("Connection", "close")
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            data = resp.read(MAX_RESPONSE_BODY + 1)
            if len(data) > MAX_RESPONSE_BODY:
                raise OSError("origin response body too large")
            status, reason = resp.status, resp.reason
            # A HEAD answer keeps the origin's Content-Length (it describes a body not sent).
            keep_length = self.command == "HEAD"
            headers = [
                (k, v)
                for k, v in resp.getheaders()
                if k.lower() not in HOP_BY_HOP
                and (keep_length or k.lower() != "content-length")
            ]
            conn.close()
        except (OSError, http.client.HTTPException) as e:
            self.log_message("origin %s:%d failed: %r", host, port, e)
            self.respond(502, "bad gateway\n")
            self.write_log(502, user, kind)
            return
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/octet-stream"))
        # The origin's own status line and headers (Server, Date, ...), not the proxy's.
        self.send_response_only(status, reason)
        for k, v in headers:
            self.send_header(k, v)
        if not (status < 200 or status in (204, 304) or keep_length):
            self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)
        self.wfile.flush()
        self.write_log(status, user, kind)

    def tunnel(self, user, kind):
        hp = split_host_port(self.path, None)
        if hp is None:
            self.respond(400, "CONNECT host:port expected\n")
            self.write_log(400, user, kind)
            return
        host, port = hp
        if not is_loopback(host):
            self.respond(403, "only loopback destinations\n")
            self.write_log(403, user, kind)
            return
        try:
            upstream = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        except OSError as e:
            self.log_message("CONNECT %s:%d failed: %r", host, port, e)
            self.respond(502, "bad gateway\n")
            self.write_log(502, user, kind)
            return
        upstream.settimeout(IDLE_TIMEOUT)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        self.write_log(200, user, kind)
        self.close_connection = True

        client = self.connection
        client.settimeout(IDLE_TIMEOUT)

        def client_to_upstream():
            try:
                while True:
                    # read1 drains what http.server already buffered before touching the socket.
                    data = self.rfile.read1(65536)
                    if not data:
                        break
                    upstream.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    upstream.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        t = threading.Thread(target=client_to_upstream, daemon=True)
        t.start()
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                client.sendall(data)
        except OSError:
            pass
        try:
            client.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        t.join(IDLE_TIMEOUT)
        upstream.close()

    do_GET = handle_any
    do_HEAD = handle_any
    do_POST = handle_any
    do_PUT = handle_any
    do_DELETE = handle_any
    do_PATCH = handle_any
    do_OPTIONS = handle_any
    do_CONNECT = handle_any


class Server(UserFile, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 64

    def handle_error(self, request, client_address):
        sys.stderr.write("connection error: %r\n" % (sys.exc_info()[1],))


if __name__ == "__main__":
    main(Server, Handler, __doc__.splitlines()[0])
