-- POST /batch/ (PostHog capture v0, as posthog-python sends it): 100 events per request, each
-- with a unique distinct id and uuid. Only the varying parts are formatted per event.
local report = require "report"

local per_request = 100
local event = '{"event":"installation_heartbeat","distinct_id":"%08x-%08x",' ..
   '"uuid":"%08x-%04x-4%03x-8%03x-%012x","timestamp":"2025-11-28T00:%02d:%02dZ",' ..
   '"properties":{"version":"2.4.%d","platform":"linux","deployment_type":"docker-compose",' ..
   '"users":%d,"projects":%d,"goals":%d,"$lib":"posthog-python","$lib_version":"3.7.0"}}'
local headers = {["Content-Type"] = "application/json"}
local n = 0

setup = report.setup
response = report.response
done = report.done

function request()
   local parts = {}
   for i = 1, per_request do
      n = n + 1
      parts[i] = string.format(event, id, n, id, n % 0x10000, n % 0x1000, id % 0x1000, n,
         n % 60, n % 59, n % 9, n % 500, n % 90, n % 300)
   end
   local body = '{"api_key":"phc_bench","batch":[' .. table.concat(parts, ",") .. ']}'
   return wrk.format("POST", nil, headers, body)
end
