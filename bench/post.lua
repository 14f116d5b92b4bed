-- wrk script: POST one fixed body file, with optional extra headers; report a JSON summary line from done().
-- usage: wrk ... -s post.lua URL -- /path/to/body.json ["Name: value" ...]
-- e.g. the binary tensor data extension: -- body.bin "Inference-Header-Content-Length: 187"
local body_path = nil

function init(args)
  body_path = args[1]
  local f = assert(io.open(body_path, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  for i = 2, #args do
    local name, value = string.match(args[i], "^%s*([^:]+):%s*(.-)%s*$")
    assert(name, "extra header must be 'Name: value', got " .. args[i])
    wrk.headers[name] = value
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
