"""`meshforge sandbox show`: one sandbox as a reviewer sees it (a pull request's comment, a terminal).

Input: the lowered `Model` and a sandbox name. Output: plain data (routing key, state, expiry, preview URL,
forks with the images of workload forks, how to send the key) and its text, JSON and Markdown renderings.
"""

from __future__ import annotations

import json
from datetime import datetime

from .model import Model, Sandbox, rfc3339
from .names import valid_routing_key
from .ownership import SANDBOX_LABEL


def _images(model: Model, sandbox: str) -> dict[str, list[str]]:
    """The host of each workload fork's Service -> the images its pods run (from the objects lowering
    generated: a Service and the workload whose pods it selects)."""
    selectors: dict[str, str] = {}
    images: dict[str, list[str]] = {}
    for o in model.generated:
        body = o.body
        if ((body.get("metadata") or {}).get("labels") or {}).get(SANDBOX_LABEL) != sandbox:
            continue
        spec = body.get("spec") or {}
        if o.kind == "Service":
            domain = next((s.cluster_domain for s in model.services if s.namespace == o.namespace), "cluster.local")
            selectors[f"{o.name}.{o.namespace}.svc.{domain}"] = json.dumps(spec.get("selector"), sort_keys=True)
        else:
            pods = (spec.get("template") or {}).get("spec") or {}
            images[json.dumps((spec.get("selector") or {}).get("matchLabels"), sort_keys=True)] = [
                c.get("image", "") for c in pods.get("containers") or [] if isinstance(c, dict)]
    return {host: images.get(sel, []) for host, sel in selectors.items()}


def describe(model: Model, sb: Sandbox) -> dict:
    edge = model.edge
    active = not sb.expired and bool(sb.forks)
    preview = None
    if edge is not None and edge.preview_domain and valid_routing_key(sb.key) and active:
        preview = f"https://{edge.preview_host(sb.key)}/"
    images = _images(model, sb.name)
    forks = [{"service": f.service, "destination": model.describe_fork(f, sb.key),
              "images": images.get(getattr(f.destination, "host", None), [])} for f in sb.forks]
    group = [k.key for k in model.keys if k.owner_kind == "RouteGroup" and any(f.sandbox == sb.name for f in k.forks)]
    signed = edge is not None and edge.preview_auth is not None
    return {"name": sb.name, "namespace": sb.namespace, "routingKey": sb.key, "active": active,
            "previewSigned": signed and preview is not None,
            "expired": sb.expired, "expiresAt": rfc3339(sb.expires_at) if sb.expires_at else None,
            "previewURL": preview, "forks": forks, "routeGroupKeys": group,
            "header": model.routing.header, "baggage": f"{model.routing.baggage_key}={sb.key}"}


def _until(iso: str | None, now: datetime) -> str:
    if iso is None:
        return "never"
    when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    left = (when - now).total_seconds()
    if left <= 0:
        return f"{iso} (expired)"
    hours = left / 3600
    return f"{iso} (in {hours / 24:.0f} days)" if hours >= 48 else f"{iso} (in {hours:.0f} h)" if hours >= 1 \
        else f"{iso} (in {left / 60:.0f} min)"


def render_text(d: dict, now: datetime) -> str:
    state = "active" if d["active"] else "expired: it routes nothing" if d["expired"] else "routes nothing"
    lines = [f"sandbox {d['name']} ({d['namespace']}): {state}", f"routing key  {d['routingKey']}",
             f"expires      {_until(d['expiresAt'], now)}"]
    if d["previewURL"]:
        lines.append(f"preview      {d['previewURL']}" + ("  (signed links only: meshforge preview link "
                                                         f"--routing-key {d['routingKey']} ...)" if d["previewSigned"] else ""))
    for f in d["forks"]:
        lines.append(f"fork         {f['service']} -> {f['destination']}" +
                     (f" ({', '.join(f['images'])})" if f["images"] else ""))
    if d["routeGroupKeys"]:
        lines.append(f"also under   {', '.join(d['routeGroupKeys'])} (route groups)")
    lines.append(f"send the key as the header '{d['header']}: {d['routingKey']}' or the baggage member "
                 f"'{d['baggage']}'")
    return "\n".join(lines) + "\n"


def render_markdown(d: dict, now: datetime) -> str:
    def code(text: str) -> str:
        return "`" + text.replace("`", "'") + "`"

    state = "active" if d["active"] else "**expired**: it routes nothing" if d["expired"] else "routes nothing"
    rows = [("state", state), ("routing key", code(d["routingKey"])), ("expires", _until(d["expiresAt"], now))]
    if d["previewURL"]:
        rows.append(("preview", d["previewURL"] + (" (signed links only: `meshforge preview link`)"
                                                   if d["previewSigned"] else "")))
    for f in d["forks"]:
        what = code(f["destination"]) + ("".join(f"<br>image {code(i)}" for i in f["images"]))
        rows.append((f"fork {code(f['service'])}", what))
    if d["routeGroupKeys"]:
        rows.append(("route groups", ", ".join(code(k) for k in d["routeGroupKeys"])))
    out = [f"### meshforge sandbox {code(d['name'])}", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    out += ["", f"Requests carrying the key reach this sandbox's forks and the baseline everywhere else: the header "
            f"{code(d['header'] + ': ' + d['routingKey'])}, or the W3C baggage member {code(d['baggage'])}"
            + (", or the preview URL above." if d["previewURL"] else "."), ""]
    return "\n".join(out)


def render_json(d: dict) -> str:
    return json.dumps(d, indent=2, sort_keys=True) + "\n"
