"""Routing-key carriers: how a key is recognised in a request, shared by every backend.

Input: `Routing` settings and validated routing keys. Output: an RE2 pattern for the W3C `baggage`
member (Istio), and the per-request extraction rules the Envoy filter implements. Keys reach a
regular expression only after `names.valid_routing_key` accepted them, and are escaped anyway.
"""

from __future__ import annotations

from .names import valid_routing_key

_OWS = "[ \\t]*"


def re2_escape(text: str) -> str:
    """Escape every character that is not a letter, digit or '-' (RE2 accepts '\\' before punctuation)."""
    return "".join(c if c.isalnum() and c.isascii() or c == "-" else "\\" + c for c in text)


def baggage_regex(baggage_key: str, key: str) -> str:
    """RE2 that fully matches a `baggage` value holding exactly the member `<baggage_key>=<key>`.

    W3C baggage: `member *(OWS "," OWS member)`, member = `key OWS "=" OWS value *(OWS ";" property)`.
    The member may stand anywhere in the list; neither a longer key (`xkey=k`) nor a longer value
    (`key=k2`) matches. Multiple `baggage` headers reach the matcher joined by ','.
    """
    if not valid_routing_key(key):
        raise ValueError(f"invalid routing key {key!r}")
    return (f"^(?:.*,)?{_OWS}{re2_escape(baggage_key)}{_OWS}={_OWS}{re2_escape(key)}{_OWS}(?:;[^,]*)?(?:,.*)?$")


def any_member_regex(baggage_key: str) -> str:
    """RE2 that fully matches a `baggage` value holding a `<baggage_key>=...` member, whatever its value."""
    return f"^(?:.*,)?{_OWS}{re2_escape(baggage_key)}{_OWS}=.*$"


def key_from_baggage(values: list[str], baggage_key: str) -> str | None:
    """Reference semantics of the baggage carrier (the Envoy filter implements the same, tested against it)."""
    for value in values:
        for member in value.split(","):
            k, sep, rest = member.partition("=")
            if not sep or k.strip(" \t") != baggage_key:
                continue
            v = rest.split(";", 1)[0].strip(" \t")
            return v if valid_routing_key(v) else None
    return None
