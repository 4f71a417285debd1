-- wrk script: POST a JSON body with the headers a client of Anthropic sends, and report the
-- run as one JSON line (latencies in microseconds) for bench/run.py to read.
--   BENCH_BODY     the request body
--   BENCH_API_KEY  sent as x-api-key (optional)
--   BENCH_HEADERS  more header fields, one "name: value" a line (optional)
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or '{"model":"claude-sonnet-4-6","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'
wrk.headers["content-type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
for name, value in string.gmatch(os.getenv("BENCH_HEADERS") or "", "([^:\n]+): ([^\n]*)") do
  wrk.headers[name] = value
end
local key = os.getenv("BENCH_API_KEY")
if key and key ~= "" then
  wrk.headers["x-api-key"] = key
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
