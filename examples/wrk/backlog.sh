#!/usr/bin/env bash
# Backlog run: the release gateway with its mock provider paced to one send a second (so
# nearly every delivery stays queued), driven by wrk for N seconds (the app's backlog cap,
# 1,000,000 deliveries by default, answers 429 past it: wrk counts those as non-2xx); prints
# the deliveries queued and the gateway's RSS at the end of the load and at rest.
# Usage: examples/wrk/backlog.sh [seconds] [gateway binary]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-75}; bin=${2:-./target/release/pushgate}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
[ -x "$bin" ] || cargo build --release -q --bin pushgate
dir=$(mktemp -d); out="$dir/out.txt"
export KEY=backlog-run-api-key-0123456789
cat >"$dir/pushgate.toml" <<TOML
[server]
listen = "127.0.0.1:0"
data_dir = "$dir/data"

[log]
level = "warn"

[[providers]]
name = "mock"
kind = "mock"
qps = 1

[[apps]]
id = "demo"
api_keys = ["$KEY"]
default_provider = "mock"
TOML
"$bin" serve --config "$dir/pushgate.toml" >"$out" 2>"$dir/err.txt" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.1; done
url=$(sed -n 's/^pushgate listening on //p' "$out")
for i in $(seq 0 99); do
  curl -sf -o /dev/null -X POST "$url/v1/apps/demo/aliases/user$i/devices" \
    -H "Authorization: Bearer $KEY" -d "{\"provider\":\"mock\",\"cid\":\"cid-$i\"}"
done
rss() { awk '/VmRSS/{printf "%.0f MiB", $2/1024}' /proc/$pid/status; }
echo "RSS before: $(rss)"
wrk -t2 -c32 -d"${secs}s" -s examples/wrk/send.lua "$url" | tail -1
echo "RSS at the end of the load: $(rss)"
sleep 10
echo "RSS at rest (10 s later): $(rss)"
curl -s "$url/metrics" | grep -E '^pushgate_(messages_accepted_total|outbox_depth)' || true
