-- The nginx + Lua peer's handler, as the research sketches it: decode the beacon, map it to a
-- PostHog capture event, send it, answer 200 whatever the upstream said.
local cjson = require "cjson.safe"

local peer = {}

function peer.handle(api_key)
   ngx.req.read_body()
   local beacon = cjson.decode(ngx.req.get_body_data() or "")
   if type(beacon) == "table" then
      local event = {
         api_key = api_key,
         event = "installation_heartbeat",
         distinct_id = beacon.installation_id,
         properties = {
            version = beacon.version,
            platform = beacon.platform,
            deployment_type = beacon.deployment_type,
            counts = beacon.counts,
         },
         timestamp = ngx.utctime(),
      }
      ngx.location.capture("/_posthog", {method = ngx.HTTP_POST, body = cjson.encode(event)})
   end
   ngx.status = 200
   ngx.say("OK")
end

return peer
