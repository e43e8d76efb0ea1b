"""YAML output: plain data → reviewable YAML text, the same bytes for the same data.

Input: dicts, lists and scalars. Output: text; multi-line strings (Lua source, PEM) as literal blocks.
"""

from __future__ import annotations

import yaml


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:
        return True  # a shared object is written out each time: no &anchors / *aliases for a reviewer to chase


# YAML 1.1 booleans that PyYAML's resolver does not know, but Envoy's and Kubernetes' parsers do: a routing
# key "n" written bare reaches Envoy as `false`. Quote them.
_ALSO_BOOLEAN = frozenset({"y", "Y", "n", "N"})


# Characters YAML reads as line breaks (or that a literal block would not keep): a value holding one is
# written double-quoted, with escapes, so it reads back as it was
_BREAKS = frozenset("\r\x85\u2028\u2029")


def _str(dumper, value: str):
    if any(c in _BREAKS or (c < " " and c not in "\n\t") or c == "\x7f" for c in value):
        style = '"'
    elif "\n" in value:
        style = "|"
    elif value in _ALSO_BOOLEAN:
        style = "'"
    else:
        style = None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data, sort_keys: bool = False) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=sort_keys, default_flow_style=False, width=4096,
                     allow_unicode=True)
