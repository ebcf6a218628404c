-- wrk script: POST a chat completion; optional pacing; a JSON summary with exact percentiles.
-- Environment: BENCH_BODY (request JSON), BENCH_AUTH (bearer token), BENCH_DELAY_MS (pause per connection).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = "Bearer " .. auth end

-- Pacing: each connection waits a random 0..2*pause ms (mean: pause) after every answer. The randomness
-- keeps connections out of step, so arrivals spread out (roughly Poisson) instead of coming in bursts
-- of every connection at once, which a constant pause would produce.
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if pause > 0 then
  math.randomseed(os.time())
  function delay() return math.random(0, 2 * pause) end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
    '"err_status":%d,"err_timeout":%d,"min_us":%d,"mean_us":%.1f,"max_us":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
