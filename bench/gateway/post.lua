-- wrk script of bench/gateway/run.sh: every request is a POST of a small
-- KServe v1 JSON body, on keep-alive connections. At the end it prints one
-- machine-readable line that run.sh parses (latencies in microseconds).
wrk.method = "POST"
wrk.body = '{"instances":[[5.1,3.5,1.4,0.2]]}'
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
