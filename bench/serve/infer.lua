-- wrk script for bench/serve/run.sh: POSTs one inference request body, the same bytes to
-- every server, and prints one machine-readable result line at the end.
--
-- Environment (read once per wrk thread):
--   WRK_BODY_FILE        file with the request body (required)
--   WRK_CONTENT_TYPE     Content-Type (default application/json)
--   WRK_HEADER_LENGTH    if set and not empty: Inference-Header-Content-Length (the OIP
--                        binary tensor extension: JSON header bytes, then raw tensor bytes)
--   WRK_TOKEN            if set and not empty: Authorization: Bearer <token> (ward)
--
-- Output, after wrk's own report (wrk --latency):
--   WRK_RESULT {"requests":..,"duration_s":..,"rps":..,"p50_ms":..,"p90_ms":..,"p99_ms":..,
--               "max_ms":..,"non2xx":..,"codes":{"200":..,..},"errors":{..}}
-- Latency percentiles cover every completed response, non-2xx included (a fast 429/503
-- counts as a fast response, so read p99 together with non2xx).

local function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

local path = env("WRK_BODY_FILE", nil)
if path == nil then error("WRK_BODY_FILE is not set") end
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = env("WRK_CONTENT_TYPE", "application/json")
local hlen = env("WRK_HEADER_LENGTH", nil)
if hlen ~= nil then wrk.headers["Inference-Header-Content-Length"] = hlen end
local token = env("WRK_TOKEN", nil)
if token ~= nil then wrk.headers["Authorization"] = "Bearer " .. token end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  codes = {}
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  local all, non2xx = {}, 0
  for _, t in ipairs(threads) do
    local c = t:get("codes") or {}
    for status, n in pairs(c) do
      all[status] = (all[status] or 0) + n
      if status < 200 or status > 299 then non2xx = non2xx + n end
    end
  end
  local parts = {}
  for status, n in pairs(all) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  table.sort(parts)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_s":%.3f,"rps":%.2f,"p50_ms":%.3f,"p90_ms":%.3f,' ..
    '"p99_ms":%.3f,"max_ms":%.3f,"non2xx":%d,"codes":{%s},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d}}\n',
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(99) / 1e3, latency.max / 1e3, non2xx, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout, e.status))
end
