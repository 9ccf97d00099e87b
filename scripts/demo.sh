#!/usr/bin/env bash
# Builds ferry (release) and runs it against a throwaway nginx on a loopback port: two URLs in one
# invocation, showing the second request reuse the first one's connection. Needs no network
# beyond the package registries (nginx is installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -x /usr/sbin/nginx ]] && ! command -v nginx >/dev/null 2>&1; then
    sudo=(); [[ "$(id -u)" -ne 0 ]] && sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx </dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release

dir=$(mktemp -d)
chmod 755 "$dir"  # nginx workers may run as another user
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$dir/html" "$dir/logs"
echo "hello from nginx" > "$dir/html/index.html"
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $dir/nginx.pid;
error_log $dir/logs/error.log;
events { worker_connections 64; }
http {
  access_log $dir/logs/access.log;
  client_body_temp_path $dir/cb; proxy_temp_path $dir/px; fastcgi_temp_path $dir/fc;
  uwsgi_temp_path $dir/uw; scgi_temp_path $dir/sc;
  server { listen 127.0.0.1:$port; root $dir/html; }
}
CONF
"$NGINX" -c "$dir/nginx.conf" -p "$dir" -e "$dir/logs/error.log"
trap 'kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true; rm -rf "$dir"' EXIT

./target/release/ferry -v "http://127.0.0.1:$port/" "http://127.0.0.1:$port/index.html" \
    -w 'status %{http_code}, new connections %{num_connects}\n'
