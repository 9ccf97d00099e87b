#!/usr/bin/env python3
"""A reference NTLM HTTP client (pyspnego) for the harness self-tests of ntlm_server.py.

    python3 tests/servers/ntlm_client.py --port N --user 'DOMAIN\\user' --password P \
        [--lm-compat-level L] [--path /x] [--then SPEC ...]

Runs one NTLM handshake (type 1, type 2, type 3) for `--path` on one HTTP/1.1 connection, then,
on the same connection, one request per `--then SPEC`, where SPEC is `PATH` (no Authorization)
or `PATH|AUTHORIZATION-VALUE`. Prints one line per request after the type 1:
`<status> <body>`. `--lm-compat-level` is pyspnego's LM_COMPAT_LEVEL for this client: 0-2 send
NTLMv1 (or LM) responses, 3 (default) sends NTLMv2. Every socket operation times out after 10 s.
"""

import argparse
import base64
import http.client
import os
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--lm-compat-level", default="3")
    parser.add_argument("--path", default="/")
    parser.add_argument("--then", action="append", default=[])
    args = parser.parse_args()

    os.environ["LM_COMPAT_LEVEL"] = args.lm_compat_level
    try:
        import spnego
    except ImportError as e:
        sys.stderr.write("pyspnego missing: run ./scripts/test.sh (pip install pyspnego) (%s)\n" % e)
        sys.exit(3)

    ctx = spnego.client(
        args.user, args.password, protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm
    )
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)

    def request(path, authorization=None):
        headers = {} if authorization is None else {"Authorization": authorization}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp, resp.read().decode("utf-8", "replace")

    resp, _ = request(args.path, "NTLM " + base64.b64encode(ctx.step()).decode("ascii"))
    challenge = resp.getheader("WWW-Authenticate", "")
    if resp.status != 401 or not challenge.startswith("NTLM "):
        print("no challenge: %d %r" % (resp.status, challenge))
        sys.exit(1)
    token = ctx.step(base64.b64decode(challenge[5:]))
    resp, body = request(args.path, "NTLM " + base64.b64encode(token).decode("ascii"))
    print("%d %s" % (resp.status, body.strip()))
    for spec in args.then:
        path, _, auth = spec.partition("|")
        resp, body = request(path, auth or None)
        print("%d %s" % (resp.status, body.strip()))
    conn.close()


if __name__ == "__main__":
    main()
