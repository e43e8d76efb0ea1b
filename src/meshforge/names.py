"""Naming rules shared by every stage: what a routing key may be.

Input: user text. Output: yes or no. This is the only gate between user text and any regular
expression or header match: keys reach carriers and emitters only after passing it.
"""

from __future__ import annotations

import re

ROUTING_KEY = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
ROUTING_KEY_HINT = "lower-case letters, digits and '-', 1-63 characters, starting and ending alphanumeric"


def valid_routing_key(key: object) -> bool:
    return isinstance(key, str) and len(key) <= 63 and ROUTING_KEY.fullmatch(key) is not None
