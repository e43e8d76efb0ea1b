local BAGGAGE_KEY = "%(baggage_key)s"
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
