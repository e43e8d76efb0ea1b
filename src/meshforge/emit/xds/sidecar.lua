-- meshforge: routing key from W3C baggage into the routing-key header, once per request.
-- @include carrier.lua (meshforge/emit/xds/lua.py inserts it here)

function envoy_on_request(handle)
  lift(handle:headers())
end
