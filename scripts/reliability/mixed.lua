-- wrk script for scripts/reliability/server-load.sh: searches mixed with writes against
-- `m3search serve`. 90% POST /search, 8% POST /documents (replacing documents within a
-- fixed pool of ids, so the index stays the same size), 2% DELETE /documents/{id} of the
-- same pool (404 when that id is already gone: counted apart, not as an error).
local words = {"context", "manager", "python", "iterator", "generator", "sqlite", "index",
  "search", "unicode", "string", "exception", "class", "module", "import", "thread",
  "async", "await", "decorator", "lambda", "closure", "dictionary", "list", "tuple"}
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid)
  ok, notfound, unavailable, client, server = 0, 0, 0, 0, 0
  pending = {}
end

local function phrase(n)
  local t = {}
  for i = 1, n do t[i] = words[math.random(#words)] end
  return table.concat(t, " ")
end

request = function()
  local r = math.random(100)
  if r <= 90 then
    local body = string.format('{"query": "%s", "k": %d}', phrase(math.random(2, 6)), math.random(1, 20))
    return wrk.format("POST", "/search", {["Content-Type"] = "application/json"}, body)
  elseif r <= 98 then
    local body = string.format('{"documents": [{"id": "load-%d", "text": "%s", "metadata": {"source": "wrk"}}]}',
      math.random(200), phrase(math.random(20, 120)))
    return wrk.format("POST", "/documents", {["Content-Type"] = "application/json"}, body)
  else
    return wrk.format("DELETE", string.format("/documents/load-%d", math.random(200)))
  end
end

response = function(status, headers, body)
  if status < 300 then ok = ok + 1
  elseif status == 404 then notfound = notfound + 1
  elseif status == 503 then unavailable = unavailable + 1
  elseif status < 500 then client = client + 1
  else server = server + 1 end
end

done = function(summary, latency, requests)
  local t = {ok = 0, notfound = 0, unavailable = 0, client = 0, server = 0}
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (thread:get(k) or 0) end
  end
  io.write(string.format("requests=%d ok=%d notfound=%d unavailable503=%d client4xx=%d server5xx=%d\n",
    summary.requests, t.ok, t.notfound, t.unavailable, t.client, t.server))
  io.write(string.format("socket_errors connect=%d read=%d write=%d timeout=%d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
  io.write(string.format("latency_ms p50=%.2f p95=%.2f p99=%.2f max=%.2f\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
