"""The dashboard `serve` shows at `GET /` on its admin address: one self-contained page, no CDN.

It reads `/api/state` (sandboxes, route groups, keys, forks, expiry, the service graph, the connected
proxies and their ACK/NACK state) and `/api/requests?key=K` (recent requests with a key, hop by hop),
every two seconds. Everything from specs or proxies reaches the page as text nodes, never as markup.
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>meshforge</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2433; background: #f6f7f9; }
  header { background: #1d2433; color: #fff; padding: 10px 20px; display: flex; gap: 24px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  main { padding: 16px 20px; display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
  section { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 12px 14px; }
  section.wide { grid-column: 1 / 3; }
  h2 { font-size: 15px; margin: 0 0 8px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 3px 8px 3px 0; border-bottom: 1px solid #eef0f3; vertical-align: top; }
  th { font-weight: 600; color: #5a6377; }
  tr.selected td { background: #fff4e0; }
  tr.key { cursor: pointer; }
  .fork { color: #b35c00; font-weight: 600; }
  .nack { color: #b00020; font-weight: 600; }
  .ok { color: #1b7f3b; }
  .muted { color: #8a93a6; }
  svg text { font: 12px system-ui, sans-serif; }
</style>
</head>
<body>
<header><h1>meshforge</h1><span id="status">loading…</span></header>
<main>
  <section class="wide"><h2>Routing keys</h2>
    <table id="keys"><thead><tr><th>key</th><th>owner</th><th>forks</th><th>expires</th><th>preview</th></tr></thead>
    <tbody></tbody></table></section>
  <section><h2>Service graph for <span id="graph-key" class="fork">—</span></h2><svg id="graph" width="100%" height="260"></svg></section>
  <section><h2>Connected proxies</h2>
    <table id="proxies"><thead><tr><th>node</th><th>id</th><th>xDS</th><th>generation</th><th>state</th></tr></thead>
    <tbody></tbody></table></section>
  <section class="wide"><h2>Recent requests with <span id="requests-key" class="fork">—</span></h2>
    <table id="requests"><thead><tr><th>time</th><th>trace</th><th>from</th><th>to</th><th>version</th><th>key</th><th>status</th></tr></thead>
    <tbody></tbody></table></section>
</main>
<script>
"use strict";
let selected = null;
const SVG = "http://www.w3.org/2000/svg";

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c instanceof Node ? wrap(c) : el("td", c));
  return tr;
}
function wrap(node) { const td = document.createElement("td"); td.appendChild(node); return td; }
function until(iso) {
  if (!iso) return "never";
  const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
  if (s <= 0) return "expired";
  if (s < 3600) return "in " + Math.round(s / 60) + " min";
  if (s < 172800) return "in " + Math.round(s / 3600) + " h";
  return "in " + Math.round(s / 86400) + " d";
}

function renderKeys(state) {
  const body = document.querySelector("#keys tbody");
  body.replaceChildren();
  const expiry = {};
  for (const s of state.overview.sandboxes) expiry[s.name] = s.expiresAt;
  for (const k of state.overview.keys) {
    const tr = row([el("span", k.key, "fork"), k.ownerKind + " " + k.owner,
                    k.forks.map(f => f.service + " → " + f.destination).join("; "),
                    k.ownerKind === "Sandbox" ? until(expiry[k.owner]) : "",
                    k.previewHost ? el("span", k.previewHost) : el("span", "—", "muted")]);
    tr.className = "key" + (k.key === selected ? " selected" : "");
    tr.dataset.key = k.key;
    tr.addEventListener("click", () => { selected = k.key; refresh(); });
    body.appendChild(tr);
  }
  if (!state.overview.keys.length) body.appendChild(row([el("span", "no active routing key", "muted"), "", "", "", ""]));
}

function renderGraph(state) {
  const svg = document.getElementById("graph");
  svg.replaceChildren();
  const services = state.overview.services;
  const key = state.overview.keys.find(k => k.key === selected);
  const forked = new Set(key ? key.forks.map(f => f.service) : []);
  document.getElementById("graph-key").textContent = selected || "—";
  const calls = {}, called = new Set();
  for (const s of services) { calls[s.id] = s.dependsOn || []; for (const d of calls[s.id]) called.add(d); }
  const depth = {};
  const roots = services.map(s => s.id).filter(id => !called.has(id));
  const queue = roots.map(id => [id, 0]);
  while (queue.length) {
    const [id, d] = queue.shift();
    if (id in depth || d > 50) continue;
    depth[id] = d;
    for (const c of calls[id] || []) queue.push([c, d + 1]);
  }
  for (const s of services) if (!(s.id in depth)) depth[s.id] = 0;
  const columns = {};
  for (const s of services) (columns[depth[s.id]] = columns[depth[s.id]] || []).push(s.id);
  const pos = {}, width = svg.clientWidth || 600, cols = Object.keys(columns).length || 1;
  let height = 60;
  for (const [d, ids] of Object.entries(columns)) {
    ids.forEach((id, i) => { pos[id] = [20 + d * ((width - 160) / Math.max(cols - 1, 1)), 30 + i * 34]; });
    height = Math.max(height, 40 + ids.length * 34);
  }
  svg.setAttribute("height", String(height));
  for (const s of services) for (const d of calls[s.id]) {
    if (!(d in pos)) continue;
    const line = document.createElementNS(SVG, "line");
    line.setAttribute("x1", pos[s.id][0] + 120); line.setAttribute("y1", pos[s.id][1]);
    line.setAttribute("x2", pos[d][0]); line.setAttribute("y2", pos[d][1]);
    line.setAttribute("stroke", "#b8bfcc");
    svg.appendChild(line);
  }
  for (const s of services) {
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", forked.has(s.id) ? "node forked" : "node");
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", pos[s.id][0]); rect.setAttribute("y", pos[s.id][1] - 12);
    rect.setAttribute("width", 120); rect.setAttribute("height", 24); rect.setAttribute("rx", 4);
    rect.setAttribute("fill", forked.has(s.id) ? "#ffe2bf" : "#eef1f6");
    rect.setAttribute("stroke", forked.has(s.id) ? "#b35c00" : "#b8bfcc");
    const text = document.createElementNS(SVG, "text");
    text.setAttribute("x", pos[s.id][0] + 6); text.setAttribute("y", pos[s.id][1] + 4);
    text.textContent = s.id.length > 18 ? s.id.slice(0, 17) + "…" : s.id;
    const title = document.createElementNS(SVG, "title");
    title.textContent = s.id + (forked.has(s.id) ? " (forked by " + selected + ")" : " (baseline)");
    g.append(rect, text, title);
    svg.appendChild(g);
  }
}

function renderProxies(state) {
  const body = document.querySelector("#proxies tbody");
  body.replaceChildren();
  for (const p of state.proxies) {
    const types = Object.entries(p.types);
    const bad = types.filter(([, t]) => t.state === "NACK");
    const text = bad.length ? "NACK " + bad.map(([n, t]) => n + ": " + t.error).join("; ")
                            : types.map(([n, t]) => n + " " + t.state).join(", ");
    body.appendChild(row([p.node, p.id, p.protocol, p.generation, el("span", text, bad.length ? "nack" : "ok")]));
  }
  if (!state.proxies.length) body.appendChild(row([el("span", "no proxy connected", "muted"), "", "", "", ""]));
}

function renderRequests(data) {
  document.getElementById("requests-key").textContent = selected || "—";
  const body = document.querySelector("#requests tbody");
  body.replaceChildren();
  for (const r of (data ? data.requests : []).slice(-50).reverse()) {
    body.appendChild(row([new Date(r.time * 1000).toLocaleTimeString(), (r.traceId || "").slice(0, 8), r.node,
                          r.service || r.authority, el("span", r.version || "", r.version && r.version !== "baseline" ? "fork" : ""),
                          r.key || el("span", "none", "muted"), r.status]));
  }
  if (!body.children.length) body.appendChild(row([el("span", "no requests seen", "muted"), "", "", "", "", "", ""]));
}

async function refresh() {
  try {
    const state = await (await fetch("/api/state")).json();
    if (!state.overview) { document.getElementById("status").textContent = "no valid configuration yet"; return; }
    if (!selected || !state.overview.keys.some(k => k.key === selected))
      selected = state.overview.keys.length ? state.overview.keys[0].key : null;
    renderKeys(state); renderGraph(state); renderProxies(state);
    renderRequests(selected ? await (await fetch("/api/requests?key=" + encodeURIComponent(selected))).json() : null);
    document.getElementById("status").textContent = "generation " + state.generation + " · " +
      state.overview.keys.length + " keys · " + state.proxies.length + " proxies · updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("status").textContent = "cannot reach serve: " + e;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
