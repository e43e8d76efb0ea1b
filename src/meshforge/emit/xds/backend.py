"""`render --format xds` and `--format envoy-static`: snapshots → YAML files per node.

Input: model and options. Output: {"<name>.<namespace>.yaml": text}. `xds` lists each node's
resources in Envoy's JSON mapping (what the server would push, `@type` first); `envoy-static` is a
complete bootstrap with the same resources inline that `envoy -c FILE` runs without any server.
"""

from __future__ import annotations

import json

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format

from ...diagnostics import Diagnostics
from ...model import Model
from ...xdsapi import (
    BY_URL,
    DEFAULT_TUNNEL_ACCEPT_PORT,
    DEFAULT_TUNNEL_PORT,
    EDGE_NODE,
    RENDER_ORDER,
    TUNNEL_NODE,
    message_class,
)
from ...yamlout import dump_yaml
from ..objects import Rendered
from . import naming
from .bootstrap import node_proto
from .compiler import CompiledSnapshot, XdsCompiler
from .nodes import TUNNEL


def to_dict(msg) -> dict:
    """Envoy's JSON mapping (proto field names), as plain dicts."""
    return json.loads(json_format.MessageToJson(msg, preserving_proto_field_name=True))


def dump(data: dict) -> str:
    return dump_yaml(data, sort_keys=True)


def render_xds(model: Model, diags: Diagnostics, *, outbound_port: int, edge_port: int) -> list[Rendered]:
    snap = XdsCompiler(eds=True).compile(model)
    out = []
    for node in sorted(snap.nodes):
        if node == TUNNEL_NODE:  # at the addresses `bootstrap --tunnel` takes by default
            res = snap.resources(node, DEFAULT_TUNNEL_PORT, None, False, (TUNNEL.default_host, DEFAULT_TUNNEL_ACCEPT_PORT))
        else:
            res = snap.resources(node, edge_port if node == EDGE_NODE else outbound_port)
        doc = {"node": node, "resources": {}}
        for type_url in RENDER_ORDER:  # the order a reader expects: listeners first
            cls = message_class(type_url)
            items = [{"@type": type_url, **to_dict(cls.FromString(r.body))} for _, r in sorted(res[type_url].items())]
            doc["resources"][BY_URL[type_url].section] = items
        out.append(Rendered(naming.node_file(node), dump(doc), None))
    return out


def bootstrap_static(model: Model, node: str, snap: CompiledSnapshot, port: int, admin_port: int) -> bootstrap_pb2.Bootstrap:
    """A node's whole configuration inline: `envoy -c FILE` runs it with no server. `port` is the sidecar's
    outbound port, or the edge's listener port."""
    cfg = snap.nodes[node]
    route = route_pb2.RouteConfiguration.FromString(cfg.routes[cfg.kind.route_config].body)
    b = bootstrap_pb2.Bootstrap(node=node_proto(node, f"{node}~static", port))
    if admin_port:
        b.admin.address.CopyFrom(address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=admin_port)))
    b.static_resources.listeners.append(cfg.kind.listener(cfg.kind.default_host, port, model.routing, model.edge, route, None))
    b.static_resources.clusters.extend(cluster_pb2.Cluster.FromString(r.body) for _, r in sorted(cfg.clusters.items()))
    return b


def render_static(model: Model, diags: Diagnostics, *, outbound_port: int, admin_port: int,
                  edge_port: int) -> list[Rendered]:
    """A bootstrap per sidecar, and `edge.yaml` for the edge proxy when the model declares an edge."""
    snap = XdsCompiler(eds=False).compile(model)
    if model.tunnel is not None:
        diags.warning("MF311", "the tunnel node is not rendered as a static bootstrap: laptops attach and leave while "
                      "it runs, so `meshforge serve` (or the controller) configures it", model.tunnel.origin,
                      "run the tunnel node with `meshforge bootstrap --tunnel` against `meshforge serve`")
    return [Rendered(naming.node_file(node), dump(to_dict(bootstrap_static(
        model, node, snap, edge_port if node == EDGE_NODE else outbound_port, admin_port))), None)
        for node in sorted(snap.nodes) if node != TUNNEL_NODE]
