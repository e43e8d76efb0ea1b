"""serve's admin API, from the outside: what `doctor` and `compare --from-requests` read.

Input: serve's admin HOST:PORT (and, when it speaks HTTPS, its CA and an optional client certificate).
Output: the JSON documents of `/api/requests` and `/api/state`, or `AdminError` saying which URL failed
and why (unreachable, refused, TLS, an HTTP error, not JSON). One client, so every command reports the
same failure the same way.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
import urllib.request

from .names import join_address, parse_address


class AdminError(Exception):
    """serve's admin API could not be read; the message names the URL and the cause."""


class AdminClient:
    def __init__(self, address: str, tls_ca_file: str | None = None, tls_cert_file: str | None = None,
                 tls_key_file: str | None = None, timeout: float = 10.0):
        """`address`: HOST:PORT ([v6]:PORT); ValueError when it is not one, AdminError when the TLS files cannot
        be used."""
        host, port = parse_address(address, listen=False)
        self.context = None
        if tls_ca_file:
            try:
                self.context = ssl.create_default_context(cafile=tls_ca_file)
                if tls_cert_file:
                    self.context.load_cert_chain(tls_cert_file, tls_key_file)
            except (OSError, ssl.SSLError) as e:  # missing, unreadable, not PEM, key not the certificate's
                raise AdminError(f"cannot use the TLS files ({tls_ca_file}, {tls_cert_file}, {tls_key_file}): {e}") \
                    from None
        self.base = f"http{'s' if self.context else ''}://{join_address(host, port)}"
        self.timeout = timeout

    def get(self, path: str) -> dict:
        url = self.base + path
        try:
            with urllib.request.urlopen(url, timeout=self.timeout, context=self.context) as r:
                data = json.loads(r.read())
        except (OSError, ValueError) as e:  # unreachable, refused, TLS, HTTP errors (URLError is an OSError), not JSON
            raise AdminError(f"cannot read {url}: {e}") from None
        if not isinstance(data, dict):
            raise AdminError(f"cannot read {url}: not a JSON object")
        return data

    def requests(self, key: str | None = None, limit: int | None = None) -> list[dict]:
        """The requests serve recorded from the proxies' access logs (for one routing key, or the latest)."""
        query = {k: v for k, v in (("key", key), ("limit", limit)) if v is not None}
        data = self.get("/api/requests" + ("?" + urllib.parse.urlencode(query) if query else ""))
        rows = data.get("requests")
        if not isinstance(rows, list):
            raise AdminError(f"{self.base}/api/requests: no list of requests in the answer")
        return rows

    def state(self) -> dict:
        """What the dashboard shows: the mesh's overview, the proxies, errors."""
        return self.get("/api/state")
