-- wrk script: POST /v1/apps/demo/messages to one of 100 aliases (bound beforehand by run.sh).
-- Usage: KEY=... wrk -t2 -c32 -d10s -s examples/wrk/send.lua http://127.0.0.1:8080
local key = os.getenv("KEY") or ""
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"to":{"alias":"user%d"},"from":"loadgen","payload":{"seq":%d,"text":"hello"}}', n % 100, n)
  return wrk.format("POST", "/v1/apps/demo/messages",
    {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("accepted/s: %.0f  p50: %.2f ms  p99: %.2f ms  max: %.2f ms  errors: %d non-2xx\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, summary.errors.status))
end
