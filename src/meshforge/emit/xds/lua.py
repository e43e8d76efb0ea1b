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

local function valid(v)
  return #v >= 1 and #v <= 63 and string.find(v, "^[a-z0-9][a-z0-9%%-]*$") ~= nil and string.sub(v, -1) ~= "-"
end

-- a member's name as propagators read it (carriers.decoded): %%XX and '+' decoded, whitespace trimmed
local SPACES = {"\t", "\n", "\v", "\f", "\r", " ", "\28", "\29", "\30", "\31", "\194\133", "\194\160",
                "\225\154\128", "\226\128\168", "\226\128\169", "\226\128\175", "\226\129\159", "\227\128\128"}
for c = 128, 138 do
  SPACES[#SPACES + 1] = "\226\128" .. string.char(c)  -- U+2000 .. U+200A
end

local function strip(s)
  local again = true
  while again and #s > 0 do
    again = false
    for _, w in ipairs(SPACES) do
      if string.sub(s, 1, #w) == w then
        s, again = string.sub(s, #w + 1), true
      end
      if #s >= #w and string.sub(s, -#w) == w then
        s, again = string.sub(s, 1, #s - #w), true
      end
    end
  end
  return s
end

local function decoded(s)
  s = string.gsub(s, "%%+", " ")
  s = string.gsub(s, "%%%%(%%x%%x)", function(h) return string.char(tonumber(h, 16)) end)
  return strip(s)
end

-- a list member's name and value as written (properties after ';' left out), or nil without '='
local function split(member)
  local first = string.match(member, "^[^;]*")
  local eq = string.find(first, "=", 1, true)
  if eq == nil then
    return nil
  end
  return string.sub(first, 1, eq - 1), string.sub(first, eq + 1)
end

local function is_key_member(member)
  local name = split(member)
  return name ~= nil and decoded(name) == BAGGAGE_KEY
end

-- the first baggage member whose decoded name is BAGGAGE_KEY decides: its value, blanks trimmed, into HEADER
-- when it is a routing key (unless the caller sent HEADER itself: the plain header wins)
local function lift(headers)
  if headers:get(HEADER) ~= nil then
    return
  end
  local n = headers:getNumValues("baggage")
  for i = 0, n - 1 do
    for member in string.gmatch(headers:getAtIndex("baggage", i), "[^,]+") do
      if is_key_member(member) then
        local _, v = split(member)
        v = string.gsub(string.gsub(v, "^[ \t]+", ""), "[ \t]+$", "")
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
