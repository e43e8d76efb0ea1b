"""The dashboard `serve` shows at `GET /` on its admin address: one self-contained page, no CDN.

It reads `/api/state` (sandboxes, route groups, keys, forks, expiry, the service graph, whether the specs on
disk are valid, the connected proxies and their ACK/NACK state) and `/api/requests?key=K` (recent requests
with a key, hop by hop), every two seconds. Everything from specs or proxies reaches the page as text nodes,
never as markup. The page itself is `dashboard.html`, package data beside this module.
"""

from importlib.resources import files

PAGE = files(__package__).joinpath("dashboard.html").read_text(encoding="utf-8")
