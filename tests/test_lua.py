"""emit/xds/lua: the carrier filters' Lua, kept as package data (sidecar.lua, edge.lua, carrier.lua) and
filled in per mesh. What the Lua does is tested against a real Envoy (test_edge, test_serve, the golden
cases); here, how the sources are put together."""

from __future__ import annotations

import re
from importlib.resources import files

from meshforge.emit.xds import lua

PLACEHOLDER = re.compile(r"%\([a-z_]+\)s")


def test_the_sources_are_the_package_files_with_the_carrier_included_and_every_placeholder_filled():
    carrier = files("meshforge.emit.xds").joinpath("carrier.lua").read_text()
    sidecar = lua.source("meshforge-routing-key", "x-meshforge-routing-key")
    edge = lua.edge_source("meshforge-routing-key", "x-meshforge-routing-key", "preview.example.com", False)
    for text in (sidecar, edge):
        assert "@include" not in text and not PLACEHOLDER.search(text)
        assert 'local BAGGAGE_KEY = "meshforge-routing-key"' in text and "function envoy_on_request" in text
    assert sidecar.startswith("-- meshforge: routing key from W3C baggage")
    assert 'local PREVIEW_SUFFIX = ".preview.example.com"' in edge and "local TRUSTED = false" in edge
    assert set(PLACEHOLDER.findall(carrier)) == {"%(baggage_key)s", "%(header)s"}  # its own, filled in here
    assert carrier.splitlines()[3] in sidecar and carrier.splitlines()[3] in edge


def test_a_key_or_header_cannot_end_the_lua_string_it_is_written_in():
    text = lua.source('k"; os.exit() --', "x-h")
    assert 'local BAGGAGE_KEY = "k\\034\\059\\032os.exit\\040\\041\\032--"' in text  # decimal escapes
