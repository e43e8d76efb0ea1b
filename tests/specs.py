"""Small spec snippets shared by tests."""

BASELINE = """\
apiVersion: meshforge.dev/v1alpha1
kind: Baseline
metadata:
  name: staging
  namespace: shop
spec:
  services:
  - name: frontend
    ports:
    - {name: http, port: 80}
    dependsOn: [cartservice, checkout]
  - name: cartservice
    ports:
    - {name: grpc, port: 7070}
    labels: {app: cartservice, version: v1}
    dependsOn: [redis-cart]
  - name: checkout
    ports:
    - {name: http-api, port: 8080}
    dependsOn: [cartservice, payments.billing]
  - name: payments
    namespace: billing
    ports:
    - {name: grpc, port: 50051}
  - name: redis-cart
    ports:
    - {name: tcp-redis, port: 6379}
"""


def sandbox(name: str, *forks: tuple[str, str], key: str | None = None, labels: str = "",
            expires: str | None = None, namespace: str = "shop") -> str:
    lines = ["apiVersion: meshforge.dev/v1alpha1", "kind: Sandbox", "metadata:", f"  name: {name}",
             f"  namespace: {namespace}"]
    if labels:
        lines.append(f"  labels: {labels}")
    lines.append("spec:")
    if key:
        lines.append(f"  routingKey: {key}")
    if expires:
        lines.append(f'  expiresAt: "{expires}"')
    lines.append("  forks:")
    for svc, host in forks:
        lines += [f"  - service: {svc}", "    to:", f"      host: {host}"]
    return "\n".join(lines) + "\n"


def route_group(name: str, sandboxes: list[str] | None = None, labels: str | None = None,
                key: str | None = None) -> str:
    lines = ["apiVersion: meshforge.dev/v1alpha1", "kind: RouteGroup", "metadata:", f"  name: {name}", "spec:"]
    if key:
        lines.append(f"  routingKey: {key}")
    lines.append("  match:")
    if sandboxes is not None:
        lines.append(f"    sandboxes: [{', '.join(sandboxes)}]")
    if labels is not None:
        lines.append(f"    labels: {labels}")
    return "\n".join(lines) + "\n"
