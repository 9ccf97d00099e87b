#!/usr/bin/env python3
"""ferry's segmented-download benchmark: `ferry download --segments 4` against aria2c and curl.

Two sections, each against a private nginx on loopback serving one file of random data
(256 MiB by default):

1. rate-limited: a location with `limit_rate 20m` (20 MiB/s per connection), where several
   connections are the only way to go faster; the ceiling for four connections is 4 × 20 MiB/s.
2. unlimited: the same file from a plain location, to a file on local disk: throughput and the
   client's CPU time per GiB (user + sys, from wait4).

    python3 bench/segmented.py                  # both sections, 3 runs each, prints a table
    python3 bench/segmented.py --only limited   # one section: limited | unlimited
    python3 bench/segmented.py --runs 5 --skip-build

Every run's result is checked (exit status, size, SHA-256 against the source's, computed once)
and removed before the next run. See bench/README.md. Needs nginx, openssl, curl, aria2c
(installed with apt-get when missing and run as root) and cargo; Python 3.9+, stdlib only.
"""
import argparse
import hashlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
sys.dont_write_bytecode = True  # no bench/__pycache__ from importing run.py
import run as common  # noqa: E402  bench/run.py: nginx on loopback, logging, versions

ROOT = common.ROOT
FERRY = common.FERRY
MIB = common.MIB
GIB = common.GIB
log = common.log


# --------------------------------------------------------------------------------------------
# Environment


def ensure_aria2(install):
    if shutil.which("aria2c"):
        return
    if not install:
        sys.exit("aria2c not found: apt-get install -y aria2 "
                 "(or drop --no-install and run as root)")
    if os.geteuid() != 0:
        sys.exit("aria2c not found and not root: run `sudo apt-get install -y aria2` first")
    log("aria2c not found: apt-get install -y aria2")
    cmd = ["apt-get", "install", "-y", "aria2"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
    if r.returncode != 0:  # a stale package list: update once, then try again
        subprocess.run(["apt-get", "update"], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=600)
        r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=600)
    if r.returncode != 0 or not shutil.which("aria2c"):
        sys.exit("apt-get install -y aria2 failed:\n" + r.stderr.decode(errors="replace")[-2000:])


def build(skip):
    if skip:
        log("skipping the build (--skip-build)")
    else:
        log("building: nice -n 10 cargo build --release --bin ferry")
        subprocess.run(["nice", "-n", "10", "cargo", "build", "--release", "--bin", "ferry"],
                       cwd=ROOT, check=True, timeout=3600)
    if not os.access(FERRY, os.X_OK):
        sys.exit(f"missing {FERRY}: build it (or drop --skip-build)")


def ensure_file(cache, size):
    """A file of `size` random bytes in `cache` (made once); returns (name, its SHA-256)."""
    os.makedirs(cache, exist_ok=True)
    name = f"{size // MIB}m.bin" if size % MIB == 0 else f"{size}.bin"
    path = os.path.join(cache, name)
    if not (os.path.exists(path) and os.path.getsize(path) == size):
        log(f"creating {path} ({size} bytes of random data, once)")
        tmp = path + ".tmp"
        with open("/dev/urandom", "rb") as src, open(tmp, "wb") as dst:
            left = size
            while left:
                chunk = src.read(min(left, 4 * MIB))
                dst.write(chunk)
                left -= len(chunk)
        os.replace(tmp, path)
    log(f"hashing {path} (SHA-256, once)")
    return name, sha256_files([path])


def sha256_files(paths):
    """SHA-256 of the concatenation of `paths`."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while True:
                b = f.read(4 * MIB)
                if not b:
                    break
                h.update(b)
    return h.hexdigest()


def fs_type(path):
    """The file system type of the mount holding `path` (from /proc/self/mountinfo)."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                mnt = parts[4].replace("\\040", " ")
                sep = parts.index("-")
                inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):
                    best, kind = mnt, f"{parts[sep + 1]} ({parts[sep + 2]} on {mnt})"
    except OSError:
        pass
    return kind


def other_load():
    """Load average and how many compilers (rustc, cc1, ld) are running besides us."""
    busy = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in ("rustc", "cc1", "cc1plus", "ld", "ld.lld", "cargo", "clippy-driver"):
            busy += 1
    return f"load {common.loadavg()}, {busy} compiler processes"


class Nginx(common.Nginx):
    """bench/run.py's nginx (one worker, sendfile on), with a rate-limited location."""

    def __init__(self, workdir, docroot, rate_mib):
        super().__init__(workdir, docroot)
        self.rate_mib = rate_mib

    def config(self):
        d = self.dir
        c = ["user root;"] if os.geteuid() == 0 else []
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
            # limit_rate sends at most min(what the rate allows, sendfile_max_chunk) per write
            # and then waits bytes/rate: the chunk is what smooths the rate. Its default changed
            # (0 = unbounded before 1.21.4, 2m since), so it is set explicitly; 2 MiB at
            # 20 MiB/s is a 100 ms wait, and the timer's ~1 ms slack costs ~1%.
            "    sendfile_max_chunk 2m;",
            "    limit_rate_after 0;",
            "    keepalive_requests 100000;", "    keepalive_timeout 120s;",
            "    default_type application/octet-stream;", "    types { }",
            f"    ssl_certificate {d}/pki/leaf.pem;", f"    ssl_certificate_key {d}/pki/leaf.key;",
            "    ssl_protocols TLSv1.2 TLSv1.3;",
            f"    server {{ listen 127.0.0.1:{self.port}; root {self.docroot};",
            f"        location /limited/ {{ alias {self.docroot}/; limit_rate {self.rate_mib}m; }}",
            "    }",
            # Unused here; bench/run.py's start() waits for both ports.
            f"    server {{ listen 127.0.0.1:{self.tls_port} ssl; root {self.docroot}; }}",
            "}",
        ]
        return "\n".join(c) + "\n"


# --------------------------------------------------------------------------------------------
# Running and checking one case


class Outcome:
    def __init__(self, wall, cpu):
        self.wall, self.cpu = wall, cpu


def run_group(cmds, cwd, timeout):
    """Starts `cmds` at once, waits for all (wait4), returns wall time (first start to last
    exit) and the children's CPU time (user + sys, summed). Kills them all after `timeout`."""
    logs = []
    procs = []
    lock = threading.Lock()
    reaped = set()
    timed_out = []

    def kill_all():
        with lock:
            timed_out.append(True)
            for p in procs:
                if p.pid not in reaped:
                    try:
                        os.kill(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    timer = threading.Timer(timeout, kill_all)
    cpu = 0.0
    try:
        start = time.perf_counter()
        for cmd in cmds:
            out = tempfile.TemporaryFile()
            logs.append(out)
            procs.append(subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT,
                                          preexec_fn=common._die_with_parent))
        timer.start()
        codes = []
        for p in procs:
            _, status, ru = os.wait4(p.pid, 0)
            with lock:
                reaped.add(p.pid)
            p.returncode = os.waitstatus_to_exitcode(status)
            codes.append(p.returncode)
            cpu += ru.ru_utime + ru.ru_stime
        wall = time.perf_counter() - start
    finally:
        timer.cancel()
        with lock:
            for p in procs:  # only after an exception (Ctrl-C): nothing outlives the driver
                if p.pid not in reaped and p.returncode is None:
                    try:
                        os.kill(p.pid, signal.SIGKILL)
                        os.waitpid(p.pid, 0)
                    except (ProcessLookupError, ChildProcessError):
                        pass
                    p.returncode = -9
        outputs = []
        for f in logs:
            f.seek(0)
            outputs.append(f.read().decode(errors="replace"))
            f.close()
    if timed_out:
        raise RuntimeError(f"{cmds[0][0]} timed out after {timeout} s")
    for cmd, code, text in zip(cmds, codes, outputs):
        if code != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{text[-2000:]}")
    return Outcome(wall, cpu)


def empty_dir(d):
    for name in os.listdir(d):
        p = os.path.join(d, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)


class Case:
    """One tool in one section. `make(dir)` returns (commands run at once, the output files
    whose concatenation must equal the source)."""

    def __init__(self, label, make, role=None):
        self.label, self.make, self.role = label, make, role
        self.walls, self.cpus = [], []
        self.shown = None

    def once(self, dl_dir, size, digest, timeout):
        empty_dir(dl_dir)
        os.sync()  # no dirty pages from the previous run are written back during this one
        cmds, outs = self.make(dl_dir)
        if self.shown is None:
            self.shown = " & ".join(" ".join(c) for c in cmds)
        r = run_group(cmds, dl_dir, timeout)
        missing = [o for o in outs if not os.path.exists(o)]
        if missing:
            raise RuntimeError(f"{self.label}: no output file {missing[0]}")
        got = sum(os.path.getsize(o) for o in outs)
        if got != size:
            raise RuntimeError(f"{self.label}: wrote {got} bytes, expected {size}")
        if sha256_files(outs) != digest:
            raise RuntimeError(f"{self.label}: the result's SHA-256 differs from the source's")
        leftovers = sorted(set(os.listdir(dl_dir)) - {os.path.basename(o) for o in outs})
        if leftovers:
            raise RuntimeError(f"{self.label}: left files behind: {leftovers}")
        empty_dir(dl_dir)
        self.walls.append(r.wall)
        self.cpus.append(r.cpu)
        log(f"    {self.label}: {size / r.wall / 1e6:.1f} MB/s, {r.wall:.2f} s, "
            f"CPU {r.cpu:.2f} s")


def ferry_seg(url, n=4):
    def make(d):
        out = os.path.join(d, "out.bin")
        return [[FERRY, "download", "--segments", str(n), "-o", out, url]], [out]
    return make


def ferry_one(url):
    def make(d):
        out = os.path.join(d, "out.bin")
        return [[FERRY, "download", "-o", out, url]], [out]
    return make


def ferry_get(url):
    def make(d):
        out = os.path.join(d, "out.bin")
        return [[FERRY, "-sS", "-o", out, url]], [out]
    return make


def aria2(url):
    def make(d):
        return ([["aria2c", "-x4", "-s4", "-k1M", "--allow-overwrite=true",
                  "--file-allocation=none", "-d", d, "-o", "out.bin", url]],
                [os.path.join(d, "out.bin")])
    return make


def curl(url):
    def make(d):
        out = os.path.join(d, "out.bin")
        return [["curl", "-sS", "-o", out, url]], [out]
    return make


def curl_ranges(url, size, n=4):
    """n curl processes at once, each with one n-th of the file (`-r`): the achievable ceiling
    for n connections, with no client-side scheduling at all."""
    def make(d):
        cmds, outs = [], []
        step = size // n
        for i in range(n):
            first = i * step
            last = size - 1 if i == n - 1 else first + step - 1
            out = os.path.join(d, f"part{i}.bin")
            cmds.append(["curl", "-sS", "-r", f"{first}-{last}", "-o", out, url])
            outs.append(out)
        return cmds, outs
    return make


# --------------------------------------------------------------------------------------------
# Report


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def mb_s(size, wall):
    return size / wall / 1e6


def row_values(c, size):
    rates = [mb_s(size, w) for w in c.walls]
    cpu_gib = [cpu / (size / GIB) for cpu in c.cpus]
    return median(rates), min(rates), max(rates), median(cpu_gib), median(c.walls)


def by_role(cases, role):
    return next(c for c in cases if c.role == role)


def render_section(title, cases, size, ref_role, notes, cpu=True):
    ref = by_role(cases, ref_role)
    ref_rate = row_values(ref, size)[0]
    lines = [f"## {title}", ""]
    head = "| tool | median MB/s | MiB/s | min–max MB/s | vs " + ref.label + " |"
    sep = "|---|---:|---:|---:|---:|"
    if cpu:
        head += " CPU s/GiB (median) | CPU vs curl |"
        sep += "---:|---:|"
    head += " wall s (median) |"
    sep += "---:|"
    lines += [head, sep]
    curl_cpu = row_values(by_role(cases, "curl"), size)[3]
    for c in cases:
        m, lo, hi, cg, wall = row_values(c, size)
        line = (f"| {c.label} | **{m:.1f}** | {m * 1e6 / MIB:.1f} | {lo:.1f}–{hi:.1f} | "
                f"{m / ref_rate:.2f}× |")
        if cpu:
            line += f" {cg:.2f} | {cg / curl_cpu:.2f}× |"
        line += f" {wall:.2f} |"
        lines.append(line)
    lines.append("")
    lines += [f"- {n}" for n in notes]
    lines.append("")
    lines.append("Commands (in the run's download directory):")
    lines.append("")
    for c in cases:
        lines.append(f"- {c.label}: `{c.shown}`")
    lines.append("")
    return lines


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per case, median reported (3)")
    ap.add_argument("--only", action="append", choices=["limited", "unlimited"],
                    help="run only this section (repeatable)")
    ap.add_argument("--size-mib", type=int, default=256, help="file size in MiB (256)")
    ap.add_argument("--rate-mib", type=int, default=20,
                    help="nginx limit_rate per connection in MiB/s for the limited section (20)")
    ap.add_argument("--segments", type=int, default=4,
                    help="connections for ferry --segments, aria2c -x/-s and the curl ceiling (4)")
    ap.add_argument("--no-extras", action="store_true",
                    help="only the three tools (no N× curl -r ceiling, no extra ferry rows)")
    ap.add_argument("--dir", help="where downloads are written (default: a temp dir under "
                                  "bench/target, i.e. the repository's disk)")
    ap.add_argument("--timeout", type=float,
                    help="seconds for one run of one case (default: 4× the slowest expected "
                         "time, at least 60)")
    ap.add_argument("--skip-build", action="store_true", help="use target/release/ferry as built")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install aria2")
    ap.add_argument("--cache-dir", default=os.environ.get("FERRY_BENCH_CACHE",
                                                          common.DEFAULT_CACHE),
                    help="where the source file is kept between runs "
                         "(default bench/target/bench-cache, or $FERRY_BENCH_CACHE)")
    ap.add_argument("--out", default=os.path.join(BENCH, "target", "segmented-results.md"),
                    help="also write the report here (default bench/target/segmented-results.md)")
    args = ap.parse_args()
    only = set(args.only or ["limited", "unlimited"])
    if args.runs < 1 or args.size_mib < 8 or not 2 <= args.segments <= 16:
        sys.exit("--runs ≥ 1, --size-mib ≥ 8 and --segments 2..16, please")

    for tool in ("nginx", "openssl", "curl", "cargo"):
        if not shutil.which(tool) and not (tool == "nginx" and os.path.exists("/usr/sbin/nginx")):
            sys.exit(f"{tool} not found; on Debian: apt-get install nginx openssl curl")
    ensure_aria2(not args.no_install)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    load_before = other_load()
    build(args.skip_build)
    size = args.size_mib * MIB
    name, digest = ensure_file(args.cache_dir, size)
    rate = args.rate_mib * MIB
    n = args.segments
    timeout = args.timeout or max(60.0, 4 * size / rate)

    base = args.dir or os.path.join(BENCH, "target")
    os.makedirs(base, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="ferry-seg-bench-")
    dl_dir = tempfile.mkdtemp(prefix="ferry-seg-dl-", dir=base)
    disk = fs_type(dl_dir)
    if disk.startswith("tmpfs"):
        log(f"note: {dl_dir} is on tmpfs; pass --dir on a disk for the 'to disk' numbers")
    ng = Nginx(workdir, os.path.abspath(args.cache_dir), args.rate_mib)
    report = ["# ferry segmented-download benchmark", ""]
    targets = []
    started = time.time()
    try:
        ng.start()
        limited_url = f"http://127.0.0.1:{ng.port}/limited/{name}"
        plain_url = f"http://127.0.0.1:{ng.port}/{name}"

        if "limited" in only:
            cases = [Case(f"ferry download --segments {n}", ferry_seg(limited_url, n), "ferry"),
                     Case(f"aria2c -x{n} -s{n} -k1M", aria2(limited_url), "aria2"),
                     Case("curl", curl(limited_url), "curl")]
            if not args.no_extras:
                cases.append(Case(f"{n}× curl -r (parallel ranges)",
                                  curl_ranges(limited_url, size, n), "ceiling"))
            at = other_load()
            log(f"limit_rate {args.rate_mib}m: {args.runs} rounds ({at})")
            for i in range(args.runs):
                log(f"  round {i + 1}/{args.runs}")
                for c in cases:
                    c.once(dl_dir, size, digest, timeout)
            ceiling = n * rate / 1e6
            # nginx waits bytes/rate after each sendfile_max_chunk (2 MiB) it sends; the wait
            # after the last chunk is never taken, so k chunks take (k - 1) waits.
            chunks = -(-(size // n) // (2 * MIB))
            fence = ceiling * chunks / (chunks - 1) if chunks > 1 else float("inf")
            curl_mib = row_values(by_role(cases, "curl"), size)[0] * 1e6 / MIB
            notes = [
                f"nominal ceiling: {n} × {args.rate_mib} MiB/s = {ceiling:.1f} MB/s "
                f"({n * args.rate_mib} MiB/s); nginx's limiter allows at most ≈{fence:.1f} MB/s "
                f"for {size // n // MIB} MiB per connection ({chunks} chunks of 2 MiB, "
                f"{chunks - 1} waits); one connection (curl) measured {curl_mib:.1f} MiB/s of the "
                f"nominal {args.rate_mib}",
                f"machine state at the start of the section: {at}",
            ]
            if not args.no_extras:
                notes.append(f"`{n}× curl -r`: {n} curl processes started together, one range "
                             f"each, into {n} files (checked concatenated): the measured ceiling, "
                             f"with no client-side scheduling at all; its CPU is the {n} "
                             "processes' sum")
            report += render_section(
                f"{args.size_mib} MiB over {n} connections, nginx `limit_rate {args.rate_mib}m` "
                f"per connection, loopback, to {disk}", cases, size, "aria2", notes, cpu=True)
            f = row_values(by_role(cases, "ferry"), size)[0]
            a = row_values(by_role(cases, "aria2"), size)[0]
            if not args.no_extras:
                top = row_values(by_role(cases, "ceiling"), size)[0]
                share = (f"; of the measured ceiling ({top:.1f}): ferry {f / top * 100:.0f}%, "
                         f"aria2c {a / top * 100:.0f}%")
            else:
                share = f"; nominal ceiling {ceiling:.1f}"
            targets.append((f"segmented: ferry --segments {n} ≥ 1.15× aria2c -x{n} "
                            f"(limit_rate {args.rate_mib}m)",
                            f"{f / a:.2f}× ({f:.1f} vs {a:.1f} MB/s{share})",
                            f / a >= 1.15))

        if "unlimited" in only:
            cases = [Case(f"ferry download --segments {n}", ferry_seg(plain_url, n), "ferry"),
                     Case(f"aria2c -x{n} -s{n} -k1M", aria2(plain_url), "aria2"),
                     Case("curl", curl(plain_url), "curl")]
            if not args.no_extras:
                cases += [Case("ferry download (1 connection)", ferry_one(plain_url), "ferry1"),
                          Case("ferry -sS -o (plain GET)", ferry_get(plain_url), "ferryget")]
            at = other_load()
            log(f"unlimited: {args.runs} rounds ({at})")
            for i in range(args.runs):
                log(f"  round {i + 1}/{args.runs}")
                for c in cases:
                    c.once(dl_dir, size, digest, max(60.0, args.timeout or 0))
            notes = [
                "CPU = user + sys of the client process (wait4's rusage), per GiB downloaded",
                f"machine state at the start of the section: {at}",
                "`ferry download` fsyncs its data and rewrites its state file at every "
                "checkpoint (default every 1 MiB or 1 s) and once at the end; curl and aria2c "
                "never fsync, so their data may still be in the page cache when they exit",
            ]
            report += render_section(
                f"{args.size_mib} MiB, unlimited, loopback, to a file on {disk}",
                cases, size, "curl", notes, cpu=True)
            f_rate, _, _, f_cpu, _ = row_values(by_role(cases, "ferry"), size)
            c_rate, _, _, c_cpu, _ = row_values(by_role(cases, "curl"), size)
            targets.append((f"unlimited: ferry --segments {n} MB/s ≥ curl's",
                            f"{f_rate / c_rate:.2f}× ({f_rate:.0f} vs {c_rate:.0f} MB/s)",
                            f_rate >= c_rate))
            targets.append((f"unlimited: ferry --segments {n} CPU/GiB ≤ curl's",
                            f"{f_cpu / c_cpu:.2f}× ({f_cpu:.2f} vs {c_cpu:.2f} s/GiB)",
                            f_cpu <= c_cpu))
    finally:
        ng.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(dl_dir, ignore_errors=True)

    if targets:
        report += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
        for t, measured, ok in targets:
            report.append(f"| {t} | {measured} | {'yes' if ok else '**no**'} |")
        report.append("")
    meta = [
        ("date", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("machine", f"{platform.machine()}, {os.cpu_count()} CPUs, "
                    f"{platform.system()} {platform.release()}"),
        ("load before / after", f"{load_before} / {other_load()}"),
        ("duration", f"{time.time() - started:.0f} s"),
        ("runs", f"{args.runs} per case, interleaved round-robin; medians"),
        ("file", f"{args.size_mib} MiB of random data, served from the page cache; every result "
                 "checked (size and SHA-256) and deleted, then sync(2), before the next run"),
        ("downloads written to", disk),
        ("server", common.tool_version(["nginx", "-v"]) + ", 1 worker, sendfile on, "
                   "sendfile_max_chunk 2m"),
        ("peers", "; ".join([common.tool_version(["curl", "--version"]),
                             common.tool_version(["aria2c", "--version"])])),
        ("units", "MB/s = 10^6 bytes/s (wall time of the whole process, start to exit); "
                  "MiB/s = 2^20 bytes/s"),
    ]
    report[2:2] = [f"- {k}: {v}" for k, v in meta] + [""]
    text = "\n".join(report)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
        log(f"written to {args.out}")


if __name__ == "__main__":
    main()
