"""What ntlm_server.py and ntlm_proxy.py share: pyspnego set up for NTLMv2-only acceptors, the
NTLM message classifier, per-connection state and logging, the user file, and `main`.

Imported by those scripts from their own directory (they put it on sys.path first, so this
works however they are started, e.g. `python3 /abs/path/tests/servers/ntlm_server.py`).
"""

import argparse
import base64
import binascii
import itertools
import os
import sys
import threading

# The acceptor must reject NTLMv1 / LM: set before pyspnego reads it (it reads it per context).
os.environ["LM_COMPAT_LEVEL"] = "5"

try:
    import spnego  # noqa: F401 (re-exported for the servers)
except ImportError as e:  # The harness looks for this text.
    sys.stderr.write(
        "pyspnego missing: run ./scripts/test.sh (pip install pyspnego) (%s)\n" % e
    )
    sys.exit(3)

MAX_BODY = 16 * 1024 * 1024
MAX_CHUNK_LINE = 4096
IDLE_TIMEOUT = 60
NTLM_SIGNATURE = b"NTLMSSP\x00"

_conn_ids = itertools.count(1)
_conn_lock = threading.Lock()
_log_lock = threading.Lock()


class BodyError(Exception):
    """A request body the server will not read: answered with 400/413 and the connection closed."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def ntlm_message_type(header_value):
    """Classifies an Authorization value: ('type1'|'type3', token bytes) or ('other', None)."""
    scheme, _, rest = header_value.strip().partition(" ")
    if scheme.lower() != "ntlm":
        return "other", None
    try:
        token = base64.b64decode(rest.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "other", None
    if len(token) < 12 or token[:8] != NTLM_SIGNATURE:
        return "other", None
    kind = int.from_bytes(token[8:12], "little")
    if kind == 1:
        return "type1", token
    if kind == 3:
        return "type3", token
    return "other", None


class NtlmConnection:
    """Mixin for a BaseHTTPRequestHandler: a connection number, the connection's NTLM state
    (context in progress, authenticated user), stderr for http.server's own messages and an
    appending, flushed request log at `server.log_path`."""

    def setup(self):
        super().setup()
        with _conn_lock:
            self.conn_id = next(_conn_ids)
        self.ntlm_ctx = None
        self.user = None

    def reset_auth(self):
        self.ntlm_ctx = None
        self.user = None

    def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
        # http.server's own stderr lines (errors only; requests go to --log).
        sys.stderr.write("conn=%s %s\n" % (getattr(self, "conn_id", "?"), format % args))

    def log_request(self, code="-", size="-"):
        pass

    def append_log(self, line):
        with _log_lock:
            with open(self.server.log_path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()


class UserFile:
    """Mixin for the server: the `--users` file's spelling of user names."""

    def load_users(self, path):
        """Maps (DOMAIN, USER) upper-cased to the user file's own `DOMAIN\\user` spelling."""
        self.users = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\r\n").split(":")
                if len(parts) == 3:
                    domain, user = parts[0], parts[1]
                    name = "%s\\%s" % (domain, user) if domain else user
                    self.users.setdefault((domain.upper(), user.upper()), name)

    def canonical_user(self, principal):
        """pyspnego reports the names as the client sent them; report the file's spelling."""
        domain, _, user = principal.rpartition("\\")
        return self.users.get((domain.upper(), user.upper()), principal)


def main(server_class, handler_class, description):
    """`--port`, `--users`, `--log`; prints `PORT <n>` (flushed) and serves until killed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--users", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()

    if not os.path.isfile(args.users):
        sys.stderr.write("users file not found: %s\n" % args.users)
        sys.exit(2)
    os.environ["NTLM_USER_FILE"] = os.path.abspath(args.users)
    open(args.log, "a", encoding="utf-8").close()

    server = server_class(("127.0.0.1", args.port), handler_class)
    server.log_path = args.log
    server.load_users(args.users)
    sys.stdout.write("PORT %d\n" % server.server_address[1])
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
