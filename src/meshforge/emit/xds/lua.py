"""The baggage carrier in Envoy: a Lua filter that extracts the routing key once per request.

It copies the value of the `<baggage_key>` member of the W3C `baggage` header(s) into the plain
routing-key header, so the virtual host's `exact_match_map` on that one header routes in O(1)
whatever the number of keys. The plain header, when the client sent it, wins. A value that is not
a valid routing key is ignored (the request goes to the baseline). The parsing mirrors
`carriers.key_from_baggage`, which the end-to-end tests compare it with.
"""

from __future__ import annotations

_PRELUDE = r"""local BAGGAGE_KEY = "%(baggage_key)s"
local HEADER = "%(header)s"

local function trim(s)
  return (string.gsub(string.gsub(s, "^[ \t]+", ""), "[ \t]+$", ""))
end

local function valid(v)
  return #v >= 1 and #v <= 63 and string.find(v, "^[a-z0-9][a-z0-9%%-]*$") ~= nil and string.sub(v, -1) ~= "-"
end

local function member_key(member)
  local eq = string.find(member, "=", 1, true)
  if eq == nil then
    return nil
  end
  return trim(string.sub(member, 1, eq - 1))
end

-- the first baggage member named BAGGAGE_KEY, into HEADER when its value is a routing key
-- (unless the caller sent HEADER itself: the plain header wins)
local function lift(headers)
  if headers:get(HEADER) ~= nil then
    return
  end
  local n = headers:getNumValues("baggage")
  for i = 0, n - 1 do
    for member in string.gmatch(headers:getAtIndex("baggage", i), "[^,]+") do
      if member_key(member) == BAGGAGE_KEY then
        local v = string.sub(member, string.find(member, "=", 1, true) + 1)
        local semi = string.find(v, ";", 1, true)
        if semi ~= nil then
          v = string.sub(v, 1, semi - 1)
        end
        v = trim(v)
        if valid(v) then
          headers:replace(HEADER, v)
        end
        return
      end
    end
  end
end
"""

_TEMPLATE = r"""-- meshforge: routing key from W3C baggage into the routing-key header, once per request.
""" + _PRELUDE + r"""
function envoy_on_request(handle)
  lift(handle:headers())
end
"""

_EDGE_TEMPLATE = r"""-- meshforge edge: the trust boundary for routing keys, and preview hosts.
""" + _PRELUDE + r"""local PREVIEW_SUFFIX = "%(suffix)s"  -- ".<previewDomain>", or "" without preview hosts
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
      if member_key(member) == BAGGAGE_KEY then
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
"""


def edge_source(baggage_key: str, header: str, preview_domain: str | None, trusted: bool) -> str:
    """The edge's filter: a preview host sets its key (header, and a baggage member appended after the
    caller's others); an untrusted caller's own baggage member is removed (its header already was, before
    routing); a trusted caller's baggage key is lifted into the header as on a sidecar."""
    return _EDGE_TEMPLATE % {"baggage_key": _lua_string(baggage_key), "header": _lua_string(header),
                             "suffix": _lua_string("." + preview_domain) if preview_domain else "",
                             "trusted": "true" if trusted else "false"}


def _lua_string(s: str) -> str:
    # Spec validation allows only token characters in baggage keys and [a-z0-9-] in headers;
    # escape anyway so no input can end the Lua string literal.
    return "".join(c if c.isalnum() or c in "-_.!#$&'*+^`|~" else f"\\{ord(c):03d}" for c in s)


def source(baggage_key: str, header: str) -> str:
    return _TEMPLATE % {"baggage_key": _lua_string(baggage_key), "header": _lua_string(header)}
