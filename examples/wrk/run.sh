#!/usr/bin/env bash
# Short local load run: starts the release gateway on the embedded default in a temp dir,
# binds 100 aliases, drives POST /messages with wrk, prints throughput, latency and RSS.
# Usage: examples/wrk/run.sh [connections] [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${1:-32}; secs=${2:-10}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
cargo build --release -q
dir=$(mktemp -d); out="$dir/out.txt"
./target/release/pushgate serve --listen 127.0.0.1:0 --data-dir "$dir/data" >"$out" 2>"$dir/err.txt" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.1; done
url=$(sed -n 's/^pushgate listening on //p' "$out")
export KEY=$(cat "$dir/data/demo-api-key")
for i in $(seq 0 99); do
  curl -sf -o /dev/null -X POST "$url/v1/apps/demo/aliases/user$i/devices" \
    -H "Authorization: Bearer $KEY" -d "{\"provider\":\"mock\",\"cid\":\"cid-$i\"}"
done
echo "RSS before: $(awk '/VmRSS/{print $2" kB"}' /proc/$pid/status)"
wrk -t2 -c"$conns" -d"${secs}s" -s examples/wrk/send.lua "$url" | tail -1
sleep 2
echo "RSS after:  $(awk '/VmRSS/{print $2" kB"}' /proc/$pid/status)"
curl -s "$url/metrics" | grep -E '^pushgate_(deliveries_total|messages_accepted_total|store_flushes_total|outbox_depth)' || true
