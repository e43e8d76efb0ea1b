"""The baggage carrier in Envoy: a Lua filter that extracts the routing key once per request.

It copies the value of the `<baggage_key>` member of the W3C `baggage` header(s) into the plain
routing-key header, so the virtual host's `exact_match_map` on that one header routes in O(1)
whatever the number of keys. The plain header, when the client sent it, wins. A value that is not
a valid routing key is ignored (the request goes to the baseline). The parsing mirrors
`carriers.key_from_baggage`, which the end-to-end tests compare it with. The Lua itself is in
sidecar.lua, edge.lua and carrier.lua (what both share), package data beside this module.
"""

from __future__ import annotations

from importlib.resources import files


def _template(name: str) -> str:
    """A Lua source beside this module, with the carrier's functions (carrier.lua) where it includes them. The
    files are Python %-format templates: `%(name)s` is filled in, `%%` is Lua's `%`."""
    text = files(__package__).joinpath(name).read_text(encoding="utf-8")
    head, marker, tail = text.partition(_INCLUDE)
    if not marker:
        raise ValueError(f"{name} does not include carrier.lua")
    return head + _CARRIER + tail


_INCLUDE = "-- @include carrier.lua (meshforge/emit/xds/lua.py inserts it here)\n"
_CARRIER = files(__package__).joinpath("carrier.lua").read_text(encoding="utf-8")
_TEMPLATE = _template("sidecar.lua")
_EDGE_TEMPLATE = _template("edge.lua")


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
