"""Naming rules shared by every stage: routing keys, Kubernetes names and labels, addresses.

Input: user text. Output: yes or no. This is the only gate between user text and any regular
expression or header match: keys reach carriers and emitters only after passing it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

ROUTING_KEY = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
ROUTING_KEY_HINT = "lower-case letters, digits and '-', 1-63 characters, starting and ending alphanumeric"


def valid_routing_key(key: object) -> bool:
    return isinstance(key, str) and len(key) <= 63 and ROUTING_KEY.fullmatch(key) is not None


# Kubernetes' own rules (apimachinery validation), as full matches: `$` alone would accept a trailing newline.
_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
DNS1123_LABEL = re.compile(_LABEL)
DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")

DNS1123_LABEL_HINT = "lower-case letters, digits and '-', at most 63 characters, starting and ending alphanumeric"


def dns1123_label(name: object) -> bool:
    """A Kubernetes object name such as a Service's or a namespace (RFC 1123 label)."""
    return isinstance(name, str) and len(name) <= 63 and DNS1123_LABEL.fullmatch(name) is not None


def dns1123_subdomain(name: object) -> bool:
    """A host name, or the name of most Kubernetes objects (RFC 1123 subdomain)."""
    return isinstance(name, str) and len(name) <= 253 and DNS1123_SUBDOMAIN.fullmatch(name) is not None


def label_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    prefix, slash, name = key.rpartition("/")
    if slash and not dns1123_subdomain(prefix):
        return False
    return _QUALIFIED_NAME.fullmatch(name) is not None


def label_value(value: object) -> bool:
    return isinstance(value, str) and LABEL_VALUE.fullmatch(value) is not None


def is_ip(address: str) -> bool:
    """An IP literal (static addresses) rather than a DNS name (resolved by the proxy)."""
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return False


def split_host_port(text: str) -> tuple[str, str]:
    """HOST:PORT or [IPv6]:PORT -> (host, port as written); ValueError when the brackets or the colon are wrong.
    The one parser of addresses that flags and node metadata give (the callers check the host and the port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ValueError(f"{text!r}: brackets are for IPv6 addresses")
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:18000")
    return host, port


def is_address(text: object) -> bool:
    """An IP literal or a DNS name: what a static endpoint may be."""
    return isinstance(text, str) and (is_ip(text) or dns1123_subdomain(text))


def derived_name(base: str, owner: str, limit: int = 63) -> str:
    """The name of an object that exists because of `owner` (a sandbox): `<base>-<owner>-<hash>`, at most
    `limit` characters, ending with 8 hex digits of a hash of both names. The hash keeps apart pairs whose
    words run together alike (`cart` + `x-y` and `cart-x` + `y`), and a name of this shape cannot be reached
    by naming a sandbox after another object: the one place where such names are made."""
    digest = hashlib.sha256(f"{base}\0{owner}".encode()).hexdigest()[:8]
    head = f"{base}-{owner}"[: limit - len(digest) - 1].rstrip("-.")
    return f"{head}-{digest}"


# control characters (C0, DEL, C1) and the bidirectional controls that reorder what a terminal shows
_UNSHOWABLE = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]} | \
    {c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]}


def printable(text: object) -> str:
    """Text from outside (a node id, a proxy's NACK message, a cluster name) made safe to show on a terminal
    or in a text response: control and reordering characters escaped, never sent raw (no escape sequence,
    bell or carriage return reaches the reader's terminal)."""
    return str(text).translate(_UNSHOWABLE)


def parse_address(text: str, listen: bool = True) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT → (host, port); ValueError with the reason otherwise. `listen`: an address
    to listen on (port 0: any free port); else one to connect to (port 0 is an error)."""
    host, sep, port = text.rpartition(":")
    if sep and host:
        host, port = split_host_port(text)  # an IPv6 address without brackets, or brackets around no IPv6, raise
    if not host or not port.isdigit() or not (0 if listen else 1) <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT " +
                         ("(a port 0-65535; 0 picks a free one)" if listen else "(a port 1-65535)"))
    if any(c.isspace() or c in "/?#@" for c in host):
        raise ValueError(f"{text!r}: {host!r} is not a host name or address")
    return host, int(port)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
