#!/usr/bin/env python3
"""Identity keying cost: 8 threads over 8 Basic identities vs the same load as one identity,
against nginx (auth_basic, one worker) on loopback. Prints the medians and the ratio.

    python3 bench/identities.py [--runs 5] [--requests 2000]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the main benchmark's nginx and helpers)

HERE = os.path.dirname(os.path.abspath(__file__))


class AuthNginx(run.Nginx):
    def __init__(self, workdir, docroot, htpasswd):
        super().__init__(workdir, docroot)
        self.htpasswd = htpasswd

    def config(self):
        c = super().config()
        loc = (f'location / {{ auth_basic "bench"; auth_basic_user_file {self.htpasswd}; }}')
        return c.replace(f"root {self.docroot}; }}", f"root {self.docroot}; {loc} }}", 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=2000, help="per thread")
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--bin", "identities"], cwd=HERE, check=True)
    exe = os.path.join(HERE, "target", "release", "identities")
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o755)
        docroot = os.path.join(work, "www")
        os.makedirs(docroot)
        with open(os.path.join(docroot, "1k.bin"), "wb") as f:
            f.write(os.urandom(1024))
        htpasswd = os.path.join(work, "htpasswd")
        with open(htpasswd, "w") as f:
            for i in range(args.threads):
                h = subprocess.run(["openssl", "passwd", "-apr1", f"pass{i}"],
                                   capture_output=True, text=True, check=True).stdout.strip()
                f.write(f"user{i}:{h}\n")
        ng = AuthNginx(work, docroot, htpasswd)
        ng.start()
        try:
            url = ng.url(False, "1k.bin")
            results = {1: [], args.threads: []}
            for _ in range(args.runs):
                for ids in (1, args.threads):
                    out = subprocess.run([exe, url, str(args.threads), str(ids), str(args.requests)],
                                         capture_output=True, text=True, check=True, timeout=300)
                    results[ids].append(json.loads(out.stdout))
        finally:
            ng.stop()
    med = {k: run.median([r["rps"] for r in v]) for k, v in results.items()}
    conns = {k: v[-1]["connections"] for k, v in results.items()}
    print(f"| identities | median req/s | connections |\n|---:|---:|---:|")
    for k in sorted(med):
        print(f"| {k} | {med[k]:,.0f} | {conns[k]} |")
    cost = 1 - med[args.threads] / med[1]
    print(f"\n{args.threads} identities vs 1: {med[args.threads] / med[1]:.3f}x "
          f"(cost {cost * 100:.1f}%, target at most 5%)")


if __name__ == "__main__":
    main()
