"""yamlout: text every YAML reader reads back as the same data."""

import yaml

from meshforge.yamlout import dump_yaml


def test_strings_other_parsers_read_as_booleans_are_quoted():
    text = dump_yaml({"keys": ["y", "Y", "n", "N", "yes", "no", "on", "off", "null", "1e3", "0x1f", "1:20", "~"]})
    for bare in ("- y\n", "- n\n", "- Y\n", "- N\n"):
        assert bare not in text  # Envoy (yaml-cpp) and Kubernetes (YAML 1.1) would read a boolean
    assert yaml.safe_load(text) == {"keys": ["y", "Y", "n", "N", "yes", "no", "on", "off", "null", "1e3", "0x1f",
                                             "1:20", "~"]}


def test_multi_line_strings_are_literal_blocks_and_output_is_stable():
    data = {"b": "line 1\nline 2\n", "a": 1}
    assert "b: |\n  line 1\n  line 2\n" in dump_yaml(data)
    assert dump_yaml(data) == dump_yaml(dict(data))
