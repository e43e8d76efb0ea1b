"""Routing-key carriers: how a key is recognised in a request, shared by every backend.

Input: `Routing` settings and validated routing keys. Output: the reference semantics of the W3C `baggage`
carrier (`key_from_baggage`, `is_key_member`; the Envoy filters implement the same, tested against them)
and the RE2 patterns the Istio and Gateway API backends match with. Keys reach a regular expression only
after `names.valid_routing_key` accepted them, and are escaped anyway.

Member names are compared *decoded*, as OpenTelemetry's propagators read them: `%XX` and `+` decoded, then
whitespace trimmed (Python's `str.strip`, Go's `strings.TrimSpace`: Unicode whitespace). A propagator that
extracts `meshforge%2Drouting%2Dkey=k` injects `meshforge-routing-key=k` on the next hop, so the edge must
see the encoded forms as the routing-key member, or a key from outside would pass it. Values are compared
as written (blanks trimmed): routing keys are letters, digits and '-', which no propagator encodes.

Where each backend stands: the Envoy filters implement `key_from_baggage` and `is_key_member` exactly; the
Istio and Gateway API routing patterns (`baggage_regex`) accept the encoded names with blanks, '+', %20 or
%09 around them (a subset: rarer whitespace encodings reach the baseline there); their edge patterns
(`any_member_regex`) accept every name the reference decodes to the key, and more (a superset: the edge
removes the member, or with it the whole header, whenever it may be one).
"""

from __future__ import annotations

from urllib.parse import unquote_plus

from .names import valid_routing_key

_OWS = "[ \\t]*"
# Whitespace a propagator trims after decoding: Python's str.isspace() set (it covers Go's TrimSpace), as
# UTF-8. The Envoy filters carry the same list (emit/xds/lua.py).
SPACES = ("\t", "\n", "\v", "\f", "\r", " ", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0", "\u1680",
          *(chr(c) for c in range(0x2000, 0x200B)), "\u2028", "\u2029", "\u202f", "\u205f", "\u3000")
_SPACES = "".join(SPACES)


def re2_escape(text: str) -> str:
    """Escape every character that is not a letter, digit or '-' (RE2 accepts '\\' before punctuation)."""
    return "".join(c if c.isalnum() and c.isascii() or c == "-" else "\\" + c for c in text)


def decoded(text: str) -> str:
    """A baggage member's name or value as propagators read it: percent-decoded, '+' a space, trimmed."""
    return unquote_plus(text).strip(_SPACES)


def _split(member: str) -> tuple[str, str] | None:
    """(name, value) of a list member as written, properties (after ';') left out; None without '='."""
    name, sep, value = member.split(";", 1)[0].partition("=")
    return (name, value) if sep else None


def is_key_member(member: str, baggage_key: str) -> bool:
    """Whether a list member is the routing-key member, however its name is encoded."""
    parts = _split(member)
    return parts is not None and decoded(parts[0]) == baggage_key


def key_from_baggage(values: list[str], baggage_key: str) -> str | None:
    """Reference semantics of the baggage carrier: the first member whose decoded name is `baggage_key`
    decides; its value, blanks trimmed, is the key when it is a valid routing key, else there is none."""
    for value in values:
        for member in value.split(","):
            if is_key_member(member, baggage_key):
                v = _split(member)[1].strip(" \t")
                return v if valid_routing_key(v) else None
    return None


def _char(c: str) -> str:
    """One character as written or percent-encoded (hex digits in either case)."""
    hi, lo = f"{ord(c):02X}"
    enc = "%" + (hi if not hi.isalpha() else f"[{hi}{hi.lower()}]") + (lo if not lo.isalpha() else f"[{lo}{lo.lower()}]")
    lit = re2_escape(c)
    return f"(?:{lit}|{enc})" if ord(c) < 0x80 else lit


def name_pattern(baggage_key: str) -> str:
    """RE2 for the member name `baggage_key`, each character as written or percent-encoded."""
    return "".join(_char(c) for c in baggage_key)


# around a name: blanks and their encodings (`+`, %20, %09): what the routing patterns accept
_PAD = "(?:[ \\t+]|%20|%09)*"
# ... and for the edge, which removes the member whatever surrounds it: anything encoded, and any character
# outside printable ASCII as written (a superset of every whitespace a propagator trims: %0B, %C2%A0, a raw
# no-break space)
_PAD_ANY = "(?:[^!-~]|\\+|%[0-9A-Fa-f]{2})*"


def baggage_regex(baggage_key: str, key: str) -> str:
    """RE2 that fully matches a `baggage` value holding exactly the member `<baggage_key>=<key>`.

    W3C baggage: `member *(OWS "," OWS member)`, member = `key OWS "=" OWS value *(OWS ";" property)`.
    The member may stand anywhere in the list; neither a longer key (`xkey=k`) nor a longer value
    (`key=k2`) matches; the name may be percent-encoded and padded with blanks or their encodings, as
    propagators decode it. Multiple `baggage` headers reach the matcher joined by ','.
    """
    if not valid_routing_key(key):
        raise ValueError(f"invalid routing key {key!r}")
    return (f"^(?:.*,)?{_PAD}{name_pattern(baggage_key)}{_PAD}={_OWS}{re2_escape(key)}{_OWS}(?:;[^,]*)?(?:,.*)?$")


def any_member_regex(baggage_key: str) -> str:
    """RE2 that fully matches a `baggage` value holding a `<baggage_key>=...` member, whatever its value and
    however its name is encoded or padded (the edge's test for a key from outside: a superset)."""
    return f"^(?:.*,)?{_PAD_ANY}{name_pattern(baggage_key)}{_PAD_ANY}=.*$"
