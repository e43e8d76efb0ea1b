"""protowire: bytes framed by hand parse as what protobuf itself would serialise."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2, route_pb2
from hypothesis import given
from hypothesis import strategies as st

from meshforge.protowire import field, varint


@given(st.integers(0, 2**63))
def test_varint_is_protobufs(n):
    from google.protobuf.internal import encoder

    out = []
    encoder._VarintEncoder()(out.append, n)
    assert varint(n) == b"".join(out)


@given(st.lists(st.text(min_size=1, max_size=40), min_size=0, max_size=5, unique=True))
def test_concatenated_virtual_hosts_are_a_route_configuration(names):
    vhosts = [route_components_pb2.VirtualHost(name=n, domains=[n]) for n in names]
    framed = field(1, b"meshforge_outbound") + b"".join(field(2, v.SerializeToString()) for v in vhosts)
    assert route_pb2.RouteConfiguration.FromString(framed) == route_pb2.RouteConfiguration(
        name="meshforge_outbound", virtual_hosts=vhosts)
