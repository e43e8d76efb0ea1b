"""YAML output: plain data → reviewable YAML text, the same bytes for the same data.

Input: dicts, lists and scalars. Output: text; multi-line strings (Lua source, PEM) as literal blocks.
"""

from __future__ import annotations

import yaml


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def dump_yaml(data, sort_keys: bool = False) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=sort_keys, default_flow_style=False, width=4096,
                     allow_unicode=True)
