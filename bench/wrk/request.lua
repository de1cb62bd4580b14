-- One fixed request per call, for the single-request scenarios (discovery, JWKS, token with
-- client_credentials, userinfo). Arguments after `--`: METHOD PATH BODY ("" for none) "Header: value"...
-- wrk counts responses with a status of 400 or more under errors.status; `done` prints one JSON
-- line that bench/run.py reads (latencies in microseconds).

function init(args)
  wrk.method = args[1] or "GET"
  wrk.path = args[2] or "/"
  if args[3] ~= nil and args[3] ~= "" then wrk.body = args[3] end
  for i = 4, #args do
    local name, value = string.match(args[i], "^([^:]+):%s*(.*)$")
    if name then wrk.headers[name] = value end
  end
  -- no request() function: wrk then formats this request once per thread (its fastest mode)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
