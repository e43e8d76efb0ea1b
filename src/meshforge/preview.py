"""Signed preview links (CONTRACT §5.5): ES256 JSON Web Tokens scoped to one routing key, and the public keys
that check them.

Input: EC P-256 keys in PEM (the private one signs, on the machine that hands out links; the public ones go to
the edge through the Baseline). Output: a JSON Web Key Set for the edge's JWT filter, and compact JWS tokens.
Nothing here checks a token: the edge's Envoy does (jwt_authn and RBAC), so untrusted input is never parsed by
meshforge's code. `cryptography` does the elliptic-curve work (no hand-written ECDSA).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime, timezone

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "meshforge"
TOKEN_PARAM = "meshforge-preview-token"  # the link's query parameter (turned into the cookie on the first visit)
COOKIE = "meshforge-preview"
DEFAULT_MAX_TTL = 30 * 86400
_TTL = re.compile(r"^([0-9]{1,4})([smhd])$")


def audience(key: str) -> str:
    """What a token for `key` names as its audience: the edge admits it at `<key>.<previewDomain>` only."""
    return f"meshforge-preview:{key}"


def parse_ttl(text: str) -> int:
    """`8h`, `30m`, `7d`, `90s` -> seconds; ValueError otherwise."""
    m = _TTL.match(text.strip())
    if not m or int(m[1]) == 0:
        raise ValueError(f"{text!r} is not a duration like 30m, 8h or 7d")
    return int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _public_jwk(key: ec.EllipticCurvePublicKey) -> dict:
    n = key.public_numbers()
    jwk = {"crv": "P-256", "kty": "EC", "x": _b64(n.x.to_bytes(32, "big")), "y": _b64(n.y.to_bytes(32, "big"))}
    # RFC 7638: the SHA-256 of the required members, in lexicographic order, without whitespace
    thumb = _b64(hashlib.sha256(json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode()).digest())
    return {**jwk, "alg": "ES256", "kid": thumb, "use": "sig"}


def public_jwk(pem: str) -> dict:
    """A PEM public key as a JWK; ValueError unless it is an EC P-256 key."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a PEM public key that can be read (its base64 body is no key)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an EC P-256 key (the links are ES256 tokens): make one with `openssl ecparam -name "
                         "prime256v1 -genkey -noout -out preview.key` and `openssl ec -in preview.key -pubout`")
    return _public_jwk(key)


def jwks(jwk_list: list[dict]) -> str:
    """Canonical JSON of the key set (same keys, same bytes)."""
    return json.dumps({"keys": sorted(jwk_list, key=lambda k: k["kid"])}, sort_keys=True, separators=(",", ":"))


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an EC P-256 private key (the links are ES256 tokens)")
    return key


def sign(key: ec.EllipticCurvePrivateKey, routing_key: str, ttl: int, now: datetime | None = None) -> str:
    """A compact JWS: ES256, kid = the public key's thumbprint, aud = the routing key's audience, iat/nbf = now,
    exp = now + ttl."""
    issued = int((now or datetime.now(timezone.utc)).timestamp())
    header = {"alg": "ES256", "kid": _public_jwk(key.public_key())["kid"], "typ": "JWT"}
    claims = {"aud": audience(routing_key), "exp": issued + ttl, "iat": issued, "iss": ISSUER, "nbf": issued}
    signing_input = f"{_b64(json.dumps(header, separators=(',', ':')).encode())}." \
                    f"{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def link(base_url: str, token: str) -> str:
    """The URL to hand out: the preview URL with the token as a query parameter (the edge turns it into a cookie
    for that host and redirects to the URL without it)."""
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}{TOKEN_PARAM}={token}"
