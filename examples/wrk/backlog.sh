#!/usr/bin/env bash
# Backlog run: the release gateway with its mock provider paced to one send a second (so
# nearly every delivery stays queued), driven by wrk for N seconds (the app's backlog cap,
# 1,000,000 deliveries by default, answers 429 past it: wrk counts those as non-2xx); prints
# the deliveries queued and the gateway's RSS at the end of the load and at rest. With
# DRAIN=1 it then restarts the gateway unpaced (no webhooks) and times the drain.
# CACHE_MB sets the sled page cache (default 64, the gateway's own default); INBOX_LIMIT the
# mock's in-memory inbox per device (default 1000, the mock's: 100 devices × 1,000 messages
# are held in the gateway's memory once drained); EVENT_LOG=0 turns the event log off (each
# delivered message logs its event for the event stream's retention); COMMIT_WINDOW_MS sets
# [server] commit_window_ms (default: the gateway's).
# Usage: [CACHE_MB=64] [INBOX_LIMIT=1000] [EVENT_LOG=0] [COMMIT_WINDOW_MS=1] [DRAIN=1] examples/wrk/backlog.sh [seconds] [gateway binary]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-75}; bin=${2:-./target/release/pushgate}; cache_mb=${CACHE_MB:-64}; inbox_limit=${INBOX_LIMIT:-1000}
retention=3600; [ "${EVENT_LOG:-1}" = 0 ] && retention=0
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
[ -x "$bin" ] || cargo build --release -q --bin pushgate
dir=$(mktemp -d); out="$dir/out.txt"
export KEY=backlog-run-api-key-0123456789
cat >"$dir/pushgate.toml" <<TOML
[server]
listen = "127.0.0.1:0"
data_dir = "$dir/data"
cache_capacity_mb = $cache_mb
${COMMIT_WINDOW_MS:+commit_window_ms = $COMMIT_WINDOW_MS}

[log]
level = "warn"

[event_stream]
retention_seconds = $retention

[[providers]]
name = "mock"
kind = "mock"
inbox_limit = $inbox_limit
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
[ "${DRAIN:-0}" = 1 ] || exit 0
kill $pid; wait $pid 2>/dev/null || true
sed -i '/^qps = 1$/d' "$dir/pushgate.toml"
: >"$out"
"$bin" serve --config "$dir/pushgate.toml" >"$out" 2>"$dir/err.txt" &
pid=$!
for _ in $(seq 300); do grep -q "listening on" "$out" && break; sleep 0.1; done
url=$(sed -n 's/^pushgate listening on //p' "$out")
start=$(date +%s.%N); peak=0
while :; do
  depth=$(curl -s "$url/metrics" | sed -n 's/^pushgate_outbox_depth{provider="mock"} //p')
  kb=$(awk '/VmRSS/{print $2}' /proc/$pid/status); [ "$kb" -gt "$peak" ] && peak=$kb
  [ "${depth:-1}" = 0 ] && break
  sleep 1
done
echo "drained in $(echo "$(date +%s.%N) - $start" | bc) s (restart included); peak RSS $((peak / 1024)) MiB, after $(rss)"
