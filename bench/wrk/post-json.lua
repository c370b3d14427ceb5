-- wrk script for `upload-url-throughput` (bench/README.md): every request is the same
-- POST with a JSON body and a bearer token, both taken from the environment so that
-- no secret is written into a file:
--
--   WRK_BODY='{"filename":…}' WRK_TOKEN='eyJ…' wrk -t1 -c32 -d15s --latency \
--       -s bench/wrk/post-json.lua http://127.0.0.1:PORT/uploads
--
-- The request is set once here (no `request()` function), so wrk builds it once and
-- spends no Lua time per request; nor is there a `response()` hook, which would make
-- wrk parse every response's headers and body. wrk counts answers outside 2xx/3xx
-- itself ("Non-2xx or 3xx responses"; `status` below); the benchmark checks that every
-- 2xx of `POST /uploads` is a pending-upload row in storage's database.

local body = os.getenv("WRK_BODY")
local token = os.getenv("WRK_TOKEN")
if body == nil or token == nil then
  error("WRK_BODY and WRK_TOKEN must be set")
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token

-- One machine-readable line after wrk's own report (latencies in microseconds).
function done(summary, latency, requests)
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d bytes=%d connect_errors=%d read_errors=%d "
      .. "write_errors=%d status_errors=%d timeouts=%d p50_us=%d p90_us=%d p99_us=%d "
      .. "p999_us=%d max_us=%d mean_us=%.1f\n",
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
