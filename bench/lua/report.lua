-- Shared by the bench's wrk scripts: count 2xx answers per thread and print one JSON line
-- ("BENCH_JSON {...}") that bench/wrk.py parses. Loaded with require "report".
local report = {}
local threads = {}

function report.setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

-- Per thread: answers by class. A 2xx is what the sender calls acknowledged.
ok, rejected = 0, 0

function report.response(status)
   if status >= 200 and status < 300 then
      ok = ok + 1
   else
      rejected = rejected + 1
   end
end

function report.done(summary, latency, requests)
   local acked, refused = 0, 0
   for _, thread in ipairs(threads) do
      acked = acked + (thread:get("ok") or 0)
      refused = refused + (thread:get("rejected") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "acked": %d, ' ..
      '"rejected": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, ' ..
      '"timeout": %d}, "latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, ' ..
      '"mean": %.1f}}\n',
      summary.requests, summary.duration, summary.bytes, acked, refused,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean))
end

return report
