-- POST /beacon: one realistic ~400-byte beacon per request, each with a unique installation id
-- (thread number, then a per-thread counter), so nothing downstream can collapse duplicates.
local report = require "report"

local template = '{"installation_id":"%08x-%04x-4a1e-9f3c-%012x","version":"2.4.%d",' ..
   '"platform":{"os":"linux","architecture":"amd64","os_version":"Debian 12",' ..
   '"distribution":"docker"},"deployment_type":"docker-compose",' ..
   '"timestamp":"2025-11-28T00:%02d:%02dZ","counts":{"users":%d,"projects":%d,' ..
   '"goals":%d,"spaces":%d},"usage_metrics":{"active_users_7d":%d,"logins_30d":%d},' ..
   '"features_enabled":["sso","ai_summaries"],' ..
   '"telemetry":true}'
local headers = {["Content-Type"] = "application/json"}
local n = 0

setup = report.setup
response = report.response
done = report.done

function request()
   n = n + 1
   local body = string.format(template, 0x5eed0000 + id, n % 0x10000, n, n % 9,
      n % 60, n % 59, n % 500, n % 90, n % 300, n % 12, n % 400, n % 1000)
   return wrk.format("POST", nil, headers, body)
end
