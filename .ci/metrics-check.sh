#!/usr/bin/env bash
# Validates a live /metrics scrape (after real traffic) and the example alert rules with
# Prometheus's own promtool (from Debian's prometheus package, unpacked, no service started).
set -euo pipefail
cd "$(dirname "$0")/.."
tools=target/ci-tools
promtool=$tools/usr/bin/promtool
if [ ! -x "$promtool" ]; then
  mkdir -p "$tools"
  (cd "$tools" && { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download prometheus >/dev/null; }; } && dpkg-deb -x prometheus_*.deb .)
fi
"$promtool" --version | head -1
"$promtool" check rules examples/prometheus/alerts.yml
"$promtool" check config examples/prometheus/prometheus.yml
python3 -m json.tool examples/prometheus/grafana-dashboard.json >/dev/null

work=$(mktemp -d)
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cat >"$work/c.toml" <<TOML
[server]
listen = "127.0.0.1:0"
data_dir = "$work/data"
[[apps]]
id = "demo"
api_keys = ["metrics-check-key-0123456789"]
webhook_url = "http://127.0.0.1:9/unreachable"
webhook_secret = "metrics-check-secret-0123"
default_provider = "mock"
[[providers]]
name = "mock"
kind = "mock"
transient_failure_rate = 0.2
[webhooks]
retry_base_ms = 50
TOML
"${CARGO_TARGET_DIR:-target}/debug/pushgate" serve --config "$work/c.toml" >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^pushgate listening on //p' "$work/out")
[ -n "$url" ] || { cat "$work/err"; exit 1; }
auth="Authorization: Bearer metrics-check-key-0123456789"
for u in alice bob; do
  curl -sf -o /dev/null -X POST "$url/v1/apps/demo/aliases/$u/devices" -H "$auth" -d "{\"provider\":\"mock\",\"cid\":\"$u-phone\"}"
done
for i in $(seq 20); do
  curl -sf -o /dev/null -X POST "$url/v1/apps/demo/messages" -H "$auth" -d "{\"to\":{\"alias\":\"bob\"},\"from\":\"alice\",\"payload\":{\"n\":$i},\"notify_sender\":true}"
done
curl -s -o /dev/null -X POST "$url/v1/apps/demo/messages" -H "$auth" -d '{"bad json'
curl -s -o /dev/null -X POST "$url/v1/callbacks/mock/receipts" -d 'forged'
curl -sf -o /dev/null -X POST "$url/v1/mock/mock/devices/alice-phone/upstream" -d '{"payload":"hi"}'
sleep 2
curl -sf "$url/metrics" >"$work/metrics.txt"
"$promtool" check metrics <"$work/metrics.txt"
for name in pushgate_http_requests_total pushgate_messages_accepted_total pushgate_deliveries_total \
  pushgate_provider_send_duration_seconds_bucket pushgate_receipts_total pushgate_accept_to_delivered_seconds_bucket \
  pushgate_outbox_depth pushgate_retries_total pushgate_webhook_deliveries_total pushgate_callbacks_rejected_total \
  pushgate_upstream_messages_total pushgate_store_flush_duration_seconds_bucket; do
  grep -q "^$name" "$work/metrics.txt" || { echo "metrics check: $name missing"; exit 1; }
done
echo "metrics check: $(grep -c '^pushgate_' "$work/metrics.txt") pushgate series pass promtool"
