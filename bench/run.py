#!/usr/bin/env python3
"""ferry's benchmark: the ferry CLI and library against curl, wget, ureq, reqwest and hyper.

Starts a private nginx (one worker, HTTP and HTTPS on loopback, a throwaway CA and a leaf for
`localhost` made with the openssl CLI), builds the ferry CLI and bench/'s `libbench`, runs every
case as a child process, and prints a markdown table of medians, ratios, CPU time and peak RSS
(ru_maxrss of each child, via the small `measure` launcher), followed by the targets and whether they are met.

    python3 bench/run.py                 # everything (about 10 minutes on an idle 2-core box)
    python3 bench/run.py --quick         # fewer runs and requests, for a smoke test
    python3 bench/run.py --only gets     # one section: gets, bulk, fresh (repeatable)

See bench/README.md. Not part of the test suite; needs nginx, openssl, curl, wget and wrk.
"""
import argparse
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
FERRY = os.path.join(ROOT, "target", "release", "ferry")
LIBBENCH = os.path.join(BENCH, "target", "release", "libbench")
MEASURE = os.path.join(BENCH, "target", "release", "measure")
DEFAULT_CACHE = os.path.join(BENCH, "target", "bench-cache")

KIB = 1024
MIB = 1024 * 1024
GIB = 1024 * MIB
SMALL = "1k.bin"
LARGE = "1g.bin"
RUST_PEERS = ["ureq", "reqwest", "hyper"]
LIBS = ["ferry"] + RUST_PEERS
CHILD_TIMEOUT = 600  # seconds, for any one child process


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Child processes


def _die_with_parent():
    """In the child: get SIGTERM when the driver dies, so nothing outlives it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Result:
    def __init__(self, wall, maxrss_kib, cpu, stdout):
        self.wall = wall
        self.maxrss_kib = maxrss_kib
        self.cpu = cpu
        self.stdout = stdout


def run(cmd, stdout_to=None, timeout=CHILD_TIMEOUT, cpus=None):
    """Runs `cmd` under bench's `measure` launcher; returns its wall time, peak RSS (KiB) and
    CPU time as the launcher saw them (getrusage RUSAGE_CHILDREN after its only child), and its stdout.

    stdout goes to `stdout_to` (a path, e.g. /dev/null) or is captured. A non-zero exit raises.
    `cpus`: a set of CPUs to pin the command (and its threads) to.
    Measuring from this process directly would report at least Python's own ~14 MiB as the
    child's peak RSS (Linux carries the pre-exec image's peak into ru_maxrss).
    """
    out_f = open(stdout_to, "wb") if stdout_to else tempfile.TemporaryFile()
    err_f = tempfile.TemporaryFile()
    fd, report = tempfile.mkstemp(prefix="ferry-bench-measure-")
    os.close(fd)
    try:
        def pre():
            _die_with_parent()
            if cpus:
                os.sched_setaffinity(0, cpus)
        p = subprocess.Popen([MEASURE, report, *cmd], stdin=subprocess.DEVNULL, stdout=out_f,
                             stderr=err_f, preexec_fn=pre)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()  # the command itself gets SIGTERM through PR_SET_PDEATHSIG
            p.wait()
            raise RuntimeError(f"{cmd[0]} timed out after {timeout} s")
        err_f.seek(0)
        err = err_f.read().decode(errors="replace")
        if p.returncode != 0:
            short = " ".join(cmd[:8]) + (" ..." if len(cmd) > 8 else "")
            raise RuntimeError(f"{short} exited {p.returncode}:\n{err[-2000:]}")
        with open(report) as f:
            m = json.loads(f.read())
        out = b""
        if not stdout_to:
            out_f.seek(0)
            out = out_f.read()
        return Result(m["wall_s"], m["maxrss_kib"], m["user_s"] + m["sys_s"], out)
    finally:
        out_f.close()
        err_f.close()
        os.unlink(report)


# --------------------------------------------------------------------------------------------
# Environment: build, files, PKI, nginx


def build(skip):
    if skip:
        log("skipping the builds (--skip-build)")
    else:
        for d in (ROOT, BENCH):
            log(f"building: nice -n 10 cargo build --release (in {d})")
            subprocess.run(["nice", "-n", "10", "cargo", "build", "--release"], cwd=d, check=True)
    for b in (FERRY, LIBBENCH, MEASURE):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing {b}: build it (or drop --skip-build)")


def ensure_files(cache):
    os.makedirs(cache, exist_ok=True)
    for name, size in ((SMALL, KIB), (LARGE, GIB)):
        path = os.path.join(cache, name)
        if os.path.exists(path) and os.path.getsize(path) == size:
            continue
        log(f"creating {path} ({size} bytes of random data, once)")
        tmp = path + ".tmp"
        with open("/dev/urandom", "rb") as src, open(tmp, "wb") as dst:
            left = size
            while left:
                chunk = src.read(min(left, 4 * MIB))
                dst.write(chunk)
                left -= len(chunk)
        os.replace(tmp, path)


def openssl(d, *args):
    subprocess.run(["openssl", *args], cwd=d, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_pki(d):
    """A CA and a leaf for localhost/127.0.0.1 (EC P-256), valid for two days."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(d, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=ferry bench CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl(d, "req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "leaf.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
    openssl(d, "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext")
    return os.path.join(d, "ca.pem")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_connect(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Nginx:
    def __init__(self, workdir, docroot):
        self.dir = os.path.join(workdir, "nginx")
        self.docroot = docroot
        self.proc = None
        self.port = self.tls_port = None

    def config(self):
        d = self.dir
        c = []
        if os.geteuid() == 0:
            c.append("user root;")  # else the worker runs as nobody and may not read the docroot
        c += [
            "daemon off;", "master_process on;", "worker_processes 1;",
            f"pid {d}/nginx.pid;", f"error_log {d}/error.log warn;",
            "events { worker_connections 1024; }",
            "http {",
            "    access_log off;",
            f"    client_body_temp_path {d}/tmp/body;", f"    proxy_temp_path {d}/tmp/proxy;",
            f"    fastcgi_temp_path {d}/tmp/fastcgi;", f"    uwsgi_temp_path {d}/tmp/uwsgi;",
            f"    scgi_temp_path {d}/tmp/scgi;",
            "    sendfile on;", "    tcp_nopush on;", "    tcp_nodelay on;",
            "    keepalive_requests 100000;", "    keepalive_timeout 120s;",
            "    default_type application/octet-stream;", "    types { }",
            f"    ssl_certificate {d}/pki/leaf.pem;", f"    ssl_certificate_key {d}/pki/leaf.key;",
            "    ssl_protocols TLSv1.2 TLSv1.3;",
            f"    server {{ listen 127.0.0.1:{self.port}; root {self.docroot}; }}",
            f"    server {{ listen 127.0.0.1:{self.tls_port} ssl; root {self.docroot}; }}",
            "}",
        ]
        return "\n".join(c) + "\n"

    def start(self):
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "pki"), exist_ok=True)
        self.ca = make_pki(os.path.join(self.dir, "pki"))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        for attempt in range(5):
            self.port, self.tls_port = free_port(), free_port()
            if self.port == self.tls_port:
                continue
            conf = os.path.join(self.dir, "nginx.conf")
            with open(conf, "w") as f:
                f.write(self.config())
            self.proc = subprocess.Popen(
                [nginx, "-p", self.dir, "-c", conf, "-e", os.path.join(self.dir, "error.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent)
            deadline = time.time() + 10
            while time.time() < deadline and self.proc.poll() is None:
                if can_connect(self.port) and can_connect(self.tls_port):
                    log(f"nginx up: http://127.0.0.1:{self.port} https://localhost:{self.tls_port}")
                    return
                time.sleep(0.05)
            errlog = open(os.path.join(self.dir, "error.log"), errors="replace").read()
            self.stop()
            if "Address already in use" not in errlog:
                raise RuntimeError(f"nginx did not come up:\n{errlog[-3000:]}")
            log(f"nginx lost a port race (attempt {attempt + 1}); retrying")
        raise RuntimeError("nginx: no free ports after 5 attempts")

    def stop(self):
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def workers(self):
        """The pids of nginx's worker processes (children of the master)."""
        pid = self.proc.pid
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]

    def pin(self, cpus):
        """Pins the workers to `cpus` (None: every CPU)."""
        cpus = cpus or set(range(os.cpu_count()))
        for w in self.workers():
            os.sched_setaffinity(w, cpus)

    def url(self, tls, name):
        if tls:
            return f"https://localhost:{self.tls_port}/{name}"
        return f"http://127.0.0.1:{self.port}/{name}"


# --------------------------------------------------------------------------------------------
# Cases. Each returns rows: dict(tool, values (per run), unit, cpu, rss_kib, ...).


def median(xs):
    return statistics.median(xs) if xs else float("nan")


class Case:
    """One tool's command in one section; collects its runs."""

    def __init__(self, label, kind, cmd, metric, stdout_to="/dev/null", out_file=None,
                 expect_bytes=None, cpus=None):
        self.label, self.kind, self.cmd, self.metric = label, kind, cmd, metric
        self.cpus_pin = cpus
        self.stdout_to, self.out_file, self.expect_bytes = stdout_to, out_file, expect_bytes
        self.values, self.walls, self.cpus, self.rss = [], [], [], []

    def once(self):
        if self.out_file and os.path.exists(self.out_file):
            os.unlink(self.out_file)
        r = run(self.cmd, stdout_to=self.stdout_to, cpus=self.cpus_pin)
        inner = None
        if self.kind == "lib" and self.stdout_to is None:  # libbench: its JSON line
            inner = json.loads(r.stdout.decode().strip().splitlines()[-1])
            if self.expect_bytes is not None and inner["bytes"] != self.expect_bytes:
                raise RuntimeError(f"{self.label}: read {inner['bytes']} bytes, "
                                   f"expected {self.expect_bytes}")
        if self.out_file:
            size = os.path.getsize(self.out_file)
            if self.expect_bytes is not None and size != self.expect_bytes:
                raise RuntimeError(f"{self.label}: wrote {size} bytes, expected "
                                   f"{self.expect_bytes}")
            os.unlink(self.out_file)
        self.values.append(self.metric(r, inner))
        self.walls.append(r.wall)
        self.cpus.append(r.cpu)
        self.rss.append(r.maxrss_kib)


def run_interleaved(cases, runs, what):
    """Runs every case `runs` times, round-robin, so that load drifts hit all of them alike."""
    for i in range(runs):
        log(f"  {what}: round {i + 1}/{runs}")
        for c in cases:
            c.once()


def parse_wrk(text):
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if not m:
        raise RuntimeError("wrk printed no Requests/sec:\n" + text)
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", text)
    if errs:
        raise RuntimeError("wrk saw errors:\n" + text)
    return float(m.group(1))


def pin_note(cpus):
    if not cpus:
        return "unpinned"
    return f"client and nginx worker pinned to CPU {','.join(map(str, sorted(cpus)))}"


def section_gets(ng, args):
    n = args.count
    sections = []
    cpus = args.pin_cpus if args.pin in ("gets", "all") else None
    ng.pin(cpus)
    for tls in (False, True):
        url = ng.url(tls, SMALL)
        ca = ["--cacert", ng.ca] if tls else []
        per_s = lambda r, inner: n / (inner["loop_s"] if inner else r.wall)
        cases = [
            Case("ferry CLI", "cli", [FERRY, "-s", *ca] + [url] * n, per_s, cpus=cpus),
            Case("curl", "cli", ["curl", "-s", *ca] + [url] * n, per_s, cpus=cpus),
        ]
        for lib in LIBS:
            cases.append(Case(f"{lib} (lib)", "lib",
                              [LIBBENCH, lib, "get", url, str(n), "-", ng.ca if tls else "-"],
                              per_s, stdout_to=None, expect_bytes=n * KIB, cpus=cpus))
        scheme = "HTTPS" if tls else "HTTP"
        log(f"{n} keep-alive GETs of 1 KiB over {scheme}")
        run_interleaved(cases, args.runs, scheme)
        wrk = Case("wrk -c1 -t1 (server ceiling)", "wrk",
                   ["wrk", "-c1", "-t1", f"-d{args.wrk_secs}s", url],
                   lambda r, inner: parse_wrk(r.stdout.decode()), stdout_to=None, cpus=cpus)
        run_interleaved([wrk], args.wrk_runs, f"{scheme} wrk")
        sections.append((f"{n:,} sequential keep-alive GETs of 1 KiB, {scheme} "
                         f"({pin_note(cpus)})", "GETs/s", cases + [wrk], tls))
    ng.pin(None)
    return sections


def section_bulk(ng, args, workdir):
    url = ng.url(False, LARGE)
    out = os.path.join(workdir, "out.bin")
    sections = []
    cpus = args.pin_cpus if args.pin == "all" else None
    ng.pin(cpus)
    for to_file in (False, True):
        dest = out if to_file else "/dev/null"
        mibs = lambda r, inner: GIB / MIB / (inner["loop_s"] if inner else r.wall)
        of = out if to_file else None
        cases = [
            Case("ferry CLI", "cli", [FERRY, "-s", "-o", dest, url], mibs, out_file=of,
                 expect_bytes=GIB),
            Case("curl", "cli", ["curl", "-s", "-o", dest, url], mibs, out_file=of,
                 expect_bytes=GIB),
            Case("wget", "cli", ["wget", "-q", "-O", dest, url], mibs, out_file=of,
                 expect_bytes=GIB),
        ]
        mode = "bulkfile" if to_file else "bulk"
        for lib in LIBS:
            cases.append(Case(f"{lib} (lib)", "lib",
                              [LIBBENCH, lib, mode, url, "1", dest if to_file else "-", "-"],
                              mibs, stdout_to=None, out_file=of, expect_bytes=GIB))
        where = "a file" if to_file else "/dev/null"
        for c in cases:
            c.cpus_pin = cpus
        log(f"1 GiB over HTTP to {where}")
        run_interleaved(cases, args.bulk_runs, f"1 GiB to {where}")
        sections.append((f"1 GiB over HTTP to {where} ({pin_note(cpus)})", "MiB/s", cases,
                         False))
    ng.pin(None)
    return sections


def section_fresh(ng, args):
    url = ng.url(True, SMALL)
    ms = lambda r, inner: r.wall * 1000
    cases = [
        Case("ferry CLI", "cli", [FERRY, "-s", "--cacert", ng.ca, url], ms),
        Case("libbench ureq get 1", "lib", [LIBBENCH, "ureq", "get", url, "1", "-", ng.ca], ms,
             stdout_to=None, expect_bytes=KIB),
        Case("curl", "cli", ["curl", "-s", "--cacert", ng.ca, url], ms),
        # For reference: the ferry library in the same harness as ureq.
        Case("libbench ferry get 1", "lib", [LIBBENCH, "ferry", "get", url, "1", "-", ng.ca], ms,
             stdout_to=None, expect_bytes=KIB),
    ]
    cpus = args.pin_cpus if args.pin == "all" else None
    ng.pin(cpus)
    for c in cases:
        c.cpus_pin = cpus
    log("one HTTPS GET from a fresh process")
    run_interleaved(cases, args.fresh_runs, "fresh HTTPS GET")
    ng.pin(None)
    return [("One HTTPS GET of 1 KiB from a fresh process (whole-process wall time, "
             f"{pin_note(cpus)})", "ms", cases, True)]


# --------------------------------------------------------------------------------------------
# Report


def fmt(v, unit):
    if unit == "ms":
        return f"{v:.2f}"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}"


def rss(kib):
    return f"{kib / 1024:.1f} MiB"


def by_label(cases, label):
    for c in cases:
        if c.label == label:
            return c
    return None


def render(sections, targets, meta):
    lines = ["# ferry benchmark", ""]
    lines += [f"- {k}: {v}" for k, v in meta]
    lines.append("")
    for title, unit, cases, _tls in sections:
        higher_better = unit != "ms"
        lines += [f"## {title}", ""]
        lines.append(f"| tool | median {unit} | min–max | ratio | CPU s (median) | wall s (median) "
                     f"| peak RSS (max) |")
        lines.append("|---|---:|---:|---|---:|---:|---:|")
        curl = by_label(cases, "curl")
        libs = {c.label.split(" ")[0]: c for c in cases if c.kind == "lib"}
        peers = [libs[p] for p in RUST_PEERS if p in libs]
        best_peer = None
        if peers:
            best_peer = (max if higher_better else min)(peers, key=lambda c: median(c.values))
        wrk = by_label(cases, "wrk -c1 -t1 (server ceiling)")
        for c in cases:
            m = median(c.values)
            ratio = ""
            if c.kind == "cli" and curl and c is not curl:
                ratio = f"{m / median(curl.values):.2f}× curl"
            elif c.kind == "lib" and best_peer is not None and c is not best_peer:
                ratio = f"{m / median(best_peer.values):.2f}× {best_peer.label.split(' ')[0]}"
            elif c.kind == "lib" and c is best_peer:
                ratio = "fastest peer"
            if wrk and c is not wrk and c.kind != "wrk":
                ratio += f" ({m / median(wrk.values) * 100:.0f}% of wrk)"
            rng = f"{fmt(min(c.values), unit)}–{fmt(max(c.values), unit)}"
            rss_s = rss(max(c.rss)) if c.kind != "wrk" else "–"
            lines.append(f"| {c.label} | **{fmt(m, unit)}** | {rng} | {ratio} | "
                         f"{median(c.cpus):.3f} | {median(c.walls):.3f} | {rss_s} |")
        lines.append("")
    if targets:
        lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
        for name, measured, ok in targets:
            lines.append(f"| {name} | {measured} | {'yes' if ok else '**no**'} |")
        lines.append("")
    return "\n".join(lines)


def evaluate(sections):
    """The issue's targets, each as (description, measured, met)."""
    t = []
    secs = {title: cases for title, _u, cases, _tls in sections}
    for title, unit, cases, tls in sections:
        libs = {c.label.split(" ")[0]: c for c in cases if c.kind == "lib"}
        if unit == "GETs/s":
            scheme = "HTTPS" if tls else "HTTP"
            ferry_lib = median(libs["ferry"].values)
            best = max(RUST_PEERS, key=lambda p: median(libs[p].values))
            need = 1.0 if tls else 1.15
            r = ferry_lib / median(libs[best].values)
            t.append((f"library GETs/s ≥ {need:.2f}× fastest Rust peer, {scheme}",
                      f"{r:.2f}× {best} ({ferry_lib:,.0f} vs {median(libs[best].values):,.0f})",
                      r >= need))
            cli = median(by_label(cases, "ferry CLI").values)
            curl = median(by_label(cases, "curl").values)
            t.append((f"CLI GETs/s ≥ 2× curl, {scheme}",
                      f"{cli / curl:.2f}× ({cli:,.0f} vs {curl:,.0f})", cli / curl >= 2.0))
        elif unit == "MiB/s":
            cli_c = by_label(cases, "ferry CLI")
            cli = median(cli_c.values)
            curl = median(by_label(cases, "curl").values)
            lib = median(libs["ferry"].values)
            hyper = median(libs["hyper"].values)
            if "/dev/null" in title:
                t.append(("bulk CLI ≥ 1.1× curl, to /dev/null",
                          f"{cli / curl:.2f}× ({cli:,.0f} vs {curl:,.0f} MiB/s)",
                          cli / curl >= 1.1))
                t.append(("bulk library ≥ 1.1× curl, to /dev/null (library reading)",
                          f"{lib / curl:.2f}× ({lib:,.0f} vs {curl:,.0f} MiB/s)",
                          lib / curl >= 1.1))
            else:
                t.append(("bulk library ≥ hyper, to a file",
                          f"{lib / hyper:.2f}× ({lib:,.0f} vs {hyper:,.0f} MiB/s)",
                          lib >= hyper))
                t.append(("bulk CLI ≥ hyper (library), to a file",
                          f"{cli / hyper:.2f}× ({cli:,.0f} vs {hyper:,.0f} MiB/s)",
                          cli >= hyper))
            peak = max(cli_c.rss) / 1024
            where = "/dev/null" if "/dev/null" in title else "a file"
            t.append((f"peak RSS of the CLI's 1 GiB download to {where} ≤ 4 MiB",
                      f"{peak:.1f} MiB", peak <= 4.0))
        elif unit == "ms":
            f = median(by_label(cases, "ferry CLI").values)
            u = median(by_label(cases, "libbench ureq get 1").values)
            t.append(("one HTTPS GET from a fresh ferry process ≤ ureq's (libbench)",
                      f"{f:.2f} ms vs {u:.2f} ms ({f / u:.2f}×)", f <= u))
    return t


def tool_version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception as e:
        return f"? ({e})"


def loadavg():
    return "%.2f %.2f %.2f" % os.getloadavg()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per keep-alive GET case (5)")
    ap.add_argument("--bulk-runs", type=int, default=3, help="runs per 1 GiB case (3)")
    ap.add_argument("--fresh-runs", type=int, default=20, help="runs per fresh-process case (20)")
    ap.add_argument("--count", type=int, default=10000, help="GETs per keep-alive run (10000)")
    ap.add_argument("--wrk-secs", type=int, default=5, help="duration of one wrk run (5)")
    ap.add_argument("--wrk-runs", type=int, default=3, help="wrk runs per scheme (3)")
    ap.add_argument("--pin", choices=["gets", "all", "none"], default="gets",
                    help="pin the client and the nginx worker to one CPU for the keep-alive GET "
                         "cases (gets, the default), for every case (all), or never (none); see "
                         "bench/README.md for why")
    ap.add_argument("--pin-cpu", type=int, default=0, help="the CPU to pin to (0)")
    ap.add_argument("--only", action="append", choices=["gets", "bulk", "fresh"],
                    help="run only this section (repeatable)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 2 runs, 1000 GETs, 1 bulk run, 5 fresh runs, 2 s of wrk")
    ap.add_argument("--skip-build", action="store_true", help="use the binaries as built")
    ap.add_argument("--cache-dir", default=os.environ.get("FERRY_BENCH_CACHE", DEFAULT_CACHE),
                    help="where 1k.bin and 1g.bin are kept between runs "
                         "(default bench/target/bench-cache, or $FERRY_BENCH_CACHE)")
    ap.add_argument("--out", default=os.path.join(BENCH, "target", "bench-results.md"),
                    help="also write the table here (default bench/target/bench-results.md)")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.bulk_runs, args.fresh_runs = 2, 1, 5
        args.count, args.wrk_secs, args.wrk_runs = 1000, 2, 1
    only = set(args.only or ["gets", "bulk", "fresh"])
    args.pin_cpus = {args.pin_cpu}

    for tool in ("nginx", "openssl", "curl", "wget", "wrk", "cargo"):
        if not shutil.which(tool) and not (tool == "nginx" and os.path.exists("/usr/sbin/nginx")):
            sys.exit(f"{tool} not found; on Debian: apt-get install nginx openssl curl wget wrk")

    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally below stops nginx.
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    load_before = loadavg()
    uptime_before = tool_version(["uptime"])
    build(args.skip_build)
    floor = max(run(["/bin/true"]).maxrss_kib for _ in range(3))
    ensure_files(args.cache_dir)
    workdir = tempfile.mkdtemp(prefix="ferry-bench-")
    ng = Nginx(workdir, os.path.abspath(args.cache_dir))
    sections = []
    started = time.time()
    try:
        ng.start()
        if "gets" in only:
            sections += section_gets(ng, args)
        if "bulk" in only:
            sections += section_bulk(ng, args, workdir)
        if "fresh" in only:
            sections += section_fresh(ng, args)
    finally:
        ng.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    meta = [
        ("date", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("machine", f"{platform.machine()}, {os.cpu_count()} CPUs, "
                    f"{platform.system()} {platform.release()}"),
        ("load average before / after", f"{load_before} / {loadavg()}"),
        ("uptime before", uptime_before),
        ("uptime after", tool_version(["uptime"])),
        ("duration", f"{time.time() - started:.0f} s"),
        ("runs", f"{args.runs} per GET case ({args.count:,} GETs each), {args.bulk_runs} per 1 GiB "
                 f"case, {args.fresh_runs} per fresh-process case, wrk {args.wrk_runs}×"
                 f"{args.wrk_secs} s"),
        ("server", tool_version(["nginx", "-v"]) + ", 1 worker, sendfile on, TLS: EC P-256 leaf"),
        ("peers", "; ".join([tool_version(["curl", "--version"]),
                             tool_version(["wget", "--version"]),
                             tool_version(["wrk", "-v"]),
                             "ureq 3 / reqwest 0.12 blocking / hyper 1 + hyper-util legacy "
                             "(all rustls 0.23 + ring, HTTP/1.1)"])),
        ("metrics", "CLIs and fresh-process cases: whole-process wall time; libraries: the "
                    "request loop only (libbench's own clock); CPU = user+sys of the process; "
                    "peak RSS = ru_maxrss of the child (getrusage RUSAGE_CHILDREN in `measure`), max over runs"),
        ("peak RSS floor of the measurement", f"{floor / 1024:.1f} MiB (/bin/true under "
                                              "bench's `measure` launcher)"),
    ]
    report = render(sections, evaluate(sections), meta)
    print(report)
    if args.out:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(report + "\n")
        log(f"written to {args.out}")


if __name__ == "__main__":
    main()
