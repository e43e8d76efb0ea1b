"""The baggage carrier in Envoy: a Lua filter that extracts the routing key once per request.

It copies the value of the `<baggage_key>` member of the W3C `baggage` header(s) into the plain
routing-key header, so the virtual host's `exact_match_map` on that one header routes in O(1)
whatever the number of keys. The plain header, when the client sent it, wins. A value that is not
a valid routing key is ignored (the request goes to the baseline). The parsing mirrors
`carriers.key_from_baggage`, which the end-to-end tests compare it with.
"""

from __future__ import annotations

_TEMPLATE = r"""-- meshforge: routing key from W3C baggage into the routing-key header, once per request.
local BAGGAGE_KEY = "%(baggage_key)s"
local HEADER = "%(header)s"

local function trim(s)
  return (string.gsub(string.gsub(s, "^[ \t]+", ""), "[ \t]+$", ""))
end

local function valid(v)
  return #v >= 1 and #v <= 63 and string.find(v, "^[a-z0-9][a-z0-9%%-]*$") ~= nil and string.sub(v, -1) ~= "-"
end

function envoy_on_request(handle)
  local headers = handle:headers()
  if headers:get(HEADER) ~= nil then
    return
  end
  local n = headers:getNumValues("baggage")
  for i = 0, n - 1 do
    local value = headers:getAtIndex("baggage", i)
    for member in string.gmatch(value, "[^,]+") do
      local eq = string.find(member, "=", 1, true)
      if eq ~= nil and trim(string.sub(member, 1, eq - 1)) == BAGGAGE_KEY then
        local v = string.sub(member, eq + 1)
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


def _lua_string(s: str) -> str:
    # Spec validation allows only token characters in baggage keys and [a-z0-9-] in headers;
    # escape anyway so no input can end the Lua string literal.
    return "".join(c if c.isalnum() or c in "-_.!#$&'*+^`|~" else f"\\{ord(c):03d}" for c in s)


def source(baggage_key: str, header: str) -> str:
    return _TEMPLATE % {"baggage_key": _lua_string(baggage_key), "header": _lua_string(header)}
