#!/usr/bin/env bash
# The project's test command (README, and CI through .ci/run): installs what the end-to-end tests
# need when it is missing, then runs the checks in the order CI runs them. Extra arguments go to
# `cargo test` (e.g. `./scripts/test.sh --test harness_selftest`).
#
# It never starts a server: each test starts (and stops) its own nginx, Apache httpd or Python
# test server on loopback ports.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

banner() {
    printf '\n==> %s\n' "$*"
}

# --- System packages -------------------------------------------------------------------------
# nginx with Debian's echo module (tests/support/nginx.rs loads it), openssl for the test PKI,
# curl for the harness self-tests, apache2 for Digest authentication (mod_auth_digest; the tests
# run /usr/sbin/apache2 with their own config, never the service), python3 and pip for the NTLM
# test server (tests/servers/ntlm_server.py, on the pyspnego package installed below), squid for
# the proxy tests (tests/support/squid.rs runs /usr/sbin/squid in the foreground with its own
# config and its helpers basic_ncsa_auth and ntlm_fake_auth, never the service).
missing=()
if [[ ! -x /usr/sbin/nginx ]] && ! command -v nginx >/dev/null 2>&1; then
    missing+=(nginx)
fi
if [[ ! -f /usr/lib/nginx/modules/ngx_http_echo_module.so ]]; then
    missing+=(libnginx-mod-http-echo)
fi
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [[ ! -x /usr/sbin/apache2 || ! -f /usr/lib/apache2/modules/mod_auth_digest.so ]]; then
    missing+=(apache2)
fi
if [[ ! -x /usr/sbin/squid || ! -x /usr/lib/squid/basic_ncsa_auth ]]; then
    missing+=(squid)
fi
if ! command -v python3 >/dev/null 2>&1; then
    missing+=(python3 python3-pip)
elif ! python3 -m pip --version >/dev/null 2>&1 && ! python3 -c 'import spnego' >/dev/null 2>&1; then
    missing+=(python3-pip)
fi

if ((${#missing[@]} > 0)); then
    banner "Installing ${missing[*]}"
    sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        sudo=(sudo)
    fi
    # Keep the packages' own nginx, apache2 and squid services from starting (on ports 80 and
    # 3128): the tests start their own.
    # invoke-rc.d (and deb-systemd-invoke) honour policy-rc.d; add one only for this install.
    policy_added=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    install_status=0
    {
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                --no-install-recommends "${missing[@]}" </dev/null
    } || install_status=$?
    if ((policy_added)); then
        "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
    fi
    if ((install_status != 0)); then
        echo "error: could not install ${missing[*]} (apt-get exit $install_status)" >&2
        exit "$install_status"
    fi
fi

# --- Python packages -------------------------------------------------------------------------
# pyspnego: the NTLM implementation of tests/servers/ntlm_server.py. Debian has no package for
# it, so pip: first as is (root, pyenv, a virtualenv); then, for a non-root user, with --user;
# then, for a Debian-managed python3 ("externally-managed-environment"), with
# --break-system-packages.
pip_install_pyspnego() {
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        "$@" pyspnego
}
if ! python3 -c 'import spnego' >/dev/null 2>&1; then
    banner "Installing pyspnego (pip)"
    user_args=()
    if [[ "$(id -u)" -ne 0 ]]; then
        user_args=(--user)
    fi
    if ! pip_install_pyspnego; then
        if ((${#user_args[@]} == 0)) || ! pip_install_pyspnego "${user_args[@]}"; then
            echo "pip refused; retrying with --break-system-packages" >&2
            pip_install_pyspnego "${user_args[@]}" --break-system-packages
        fi
    fi
    if ! python3 -c 'import spnego' >/dev/null 2>&1; then
        echo "error: pyspnego installed but python3 cannot import spnego" >&2
        exit 1
    fi
fi

banner "Tool versions"
cargo --version
rustc --version
{ /usr/sbin/nginx -v 2>&1 || nginx -v 2>&1; } | head -n 1
openssl version
curl --version | head -n 1
/usr/sbin/apache2 -v | sed -n 1p
/usr/sbin/squid -v | sed -n 1p
python3 --version
python3 -c 'import importlib.metadata as m; print("pyspnego", m.version("pyspnego"))'

banner "cargo fmt --all -- --check"
cargo fmt --all -- --check

banner "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

banner "cargo check -p ferry-http --no-default-features (the sans-IO core builds without IO)"
cargo check -p ferry-http --no-default-features

banner "cargo test --workspace $*"
cargo test --workspace "$@"
(($# > 0)) || ./scripts/fuzz.sh # every fuzz target built and run briefly; full runs only
