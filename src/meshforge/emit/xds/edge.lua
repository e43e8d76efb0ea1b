-- meshforge edge: the trust boundary for routing keys, and preview hosts.
-- @include carrier.lua (meshforge/emit/xds/lua.py inserts it here)
local PREVIEW_SUFFIX = "%(suffix)s"  -- ".<previewDomain>", or "" without preview hosts
local TRUSTED = %(trusted)s  -- this filter chain serves callers in trustedSources

-- <key>.<previewDomain> (any case, port ignored) names a routing key
local function preview_key(headers)
  if PREVIEW_SUFFIX == "" then
    return nil
  end
  local host = headers:get(":authority")
  if host == nil then
    return nil
  end
  host = string.gsub(string.gsub(string.lower(host), ":%%d+$", ""), "%%.$", "")
  if #host <= #PREVIEW_SUFFIX or string.sub(host, -#PREVIEW_SUFFIX) ~= PREVIEW_SUFFIX then
    return nil
  end
  local key = string.sub(host, 1, #host - #PREVIEW_SUFFIX)
  if valid(key) then
    return key
  end
  return nil
end

-- the baggage members other than the routing key's, as written, and whether there was one
local function other_members(headers)
  local kept, found = {}, false
  local n = headers:getNumValues("baggage")
  for i = 0, n - 1 do
    local value = headers:getAtIndex("baggage", i)
    for member in string.gmatch(value, "[^,]+") do
      if is_key_member(member) then
        found = true
      else
        kept[#kept + 1] = member
      end
    end
  end
  return kept, found
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local key = preview_key(headers)
  if key == nil and TRUSTED then
    lift(headers)  -- a trusted caller's own key, as on a sidecar
    return
  end
  local kept, found = other_members(headers)
  if key ~= nil then
    kept[#kept + 1] = BAGGAGE_KEY .. "=" .. key
    headers:replace(HEADER, key)
  elseif not found then
    return
  end
  headers:remove("baggage")
  if #kept > 0 then
    headers:add("baggage", table.concat(kept, ","))
  end
end
