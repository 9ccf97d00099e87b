#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each for a bounded time, so that no target
# rots (issue 6; scripts/test.sh calls this after the cargo tests).
#
#   ./scripts/fuzz.sh                  # every target, FUZZ_SECONDS (default 12) each
#   FUZZ_SECONDS=60 ./scripts/fuzz.sh chunked exchange   # some targets, longer
#
# Each target runs on a COPY of its committed corpus (fuzz/corpus/<target>/), so CI never grows
# the repository's corpus. Any crash, timeout (-timeout=10 s per input) or memory blow-up
# (-rss_limit_mb=2048) fails the script; the crashing input is kept under fuzz/artifacts/<target>/
# (git-ignored) and its path printed. Reproduce one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> <path>   (from fuzz/)
#
# cargo-fuzz needs nightly-only flags (-Zsanitizer options, -Cpasses); RUSTC_BOOTSTRAP=1 lets
# the stable toolchain accept them. Targets are built in release mode with debug assertions and
# overflow checks, without a sanitizer: the code under test is safe Rust (forbid(unsafe_code)),
# and AddressSanitizer would only slow every execution.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

seconds="${FUZZ_SECONDS:-12}"
export RUSTC_BOOTSTRAP=1

banner() {
    printf '\n==> %s\n' "$*"
}

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    banner "Installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

started=$(date +%s)
banner "cargo fuzz build -s none (release, debug assertions)"
cargo fuzz build -s none
built=$(date +%s)

host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="${CARGO_TARGET_DIR:-target}/$host/release"
if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=()
banner "Running ${#targets[@]} targets for ${seconds} s each"
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t" "artifacts/$t"
    if [[ -d "corpus/$t" ]]; then
        cp -R "corpus/$t/." "$work/corpus/$t/"
    fi
    log="$work/$t.log"
    status=0
    "$bin_dir/$t" "$work/corpus/$t" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if ((status != 0)); then
        failed+=("$t")
        echo "FAIL $t (exit $status); last lines of its log:" >&2
        tail -n 40 "$log" >&2
        sed -n 's/.*Test unit written to \(.*\)$/crashing input: fuzz\/\1/p' "$log" >&2
    else
        printf 'ok   %-22s %10s runs\n' "$t" "${runs:-?}"
    fi
done

finished=$(date +%s)
echo "fuzz: build $((built - started)) s, runs $((finished - built)) s"
if ((${#failed[@]} > 0)); then
    echo "error: fuzz targets failed: ${failed[*]}" >&2
    echo "inputs are under fuzz/artifacts/<target>/; minimise with: cargo fuzz tmin -s none <target> <input>" >&2
    exit 1
fi
