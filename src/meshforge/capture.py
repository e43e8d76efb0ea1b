"""Transparent capture: the netfilter rules that send a pod's outbound TCP connections to its sidecar, as the
init containers of Istio and Linkerd install them (`meshforge capture-rules`).

Input: the sidecar's user id and outbound port, and what to leave alone. Output: `iptables-restore` input for
the nat table. Every outbound TCP connection of the network namespace is REDIRECTed to 127.0.0.1:PORT (the
sidecar's transparent listener, which restores the original destination with Envoy's original_dst filter),
except: connections of the sidecar's own user (its xDS connection to serve and every upstream connection it
makes: without this they would loop), loopback addresses (the application talking to itself, the sidecar's
admin; a connection to the pod's own address is captured and passes through the sidecar),
the excluded destinations and the excluded destination ports. Only the chain meshforge owns
(`MESHFORGE_OUTPUT`) and one jump to it from OUTPUT are written.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

CHAIN = "MESHFORGE_OUTPUT"
MULTIPORT_MAX = 15  # ports one `-m multiport` rule takes


@dataclass(frozen=True)
class Capture:
    proxy_uid: int
    outbound_port: int
    exclude_cidrs: tuple[str, ...] = ()
    exclude_ports: tuple[int, ...] = ()
    ipv6: bool = False

    def __post_init__(self):
        normal = []
        for c in self.exclude_cidrs:
            try:
                net = ipaddress.ip_network(c.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{c!r} is not a CIDR (e.g. 10.0.0.0/8, fd00::/8)") from None
            if (net.version == 6) != self.ipv6:
                raise ValueError(f"{c!r} is an IPv{net.version} range: "
                                 + ("leave it out of --ipv6 rules" if self.ipv6 else "it belongs to the --ipv6 rules"))
            normal.append(str(net))
        object.__setattr__(self, "exclude_cidrs", tuple(sorted(set(normal))))
        object.__setattr__(self, "exclude_ports", tuple(sorted(set(self.exclude_ports))))


def rules(c: Capture, remove: bool = False) -> str:
    """`iptables-restore` (or with `ipv6` `ip6tables-restore`) input: the capture, or (`remove`) its removal,
    to apply with `--noflush` so that the namespace's other rules stay."""
    if remove:
        return "\n".join(["*nat", f"-D OUTPUT -p tcp -j {CHAIN}", f"-F {CHAIN}", f"-X {CHAIN}", "COMMIT", ""])
    loopback = "::1/128" if c.ipv6 else "127.0.0.0/8"
    out = ["*nat", f":{CHAIN} - [0:0]", f"-A OUTPUT -p tcp -j {CHAIN}",
           f"-A {CHAIN} -m owner --uid-owner {c.proxy_uid} -j RETURN",
           f"-A {CHAIN} -d {loopback} -j RETURN"]
    out += [f"-A {CHAIN} -d {cidr} -j RETURN" for cidr in c.exclude_cidrs]
    ports = [str(p) for p in c.exclude_ports]
    for i in range(0, len(ports), MULTIPORT_MAX):
        out.append(f"-A {CHAIN} -p tcp -m multiport --dports {','.join(ports[i:i + MULTIPORT_MAX])} -j RETURN")
    out += [f"-A {CHAIN} -p tcp -j REDIRECT --to-ports {c.outbound_port}", "COMMIT", ""]
    return "\n".join(out)
