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


def test_any_text_reads_back_as_it_was():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=400)
    @given(st.text())
    def roundtrip(value):
        assert yaml.safe_load(dump_yaml({"v": value, "l": [value]})) == {"v": value, "l": [value]}

    roundtrip()


def test_a_next_line_character_in_an_env_value_survives_sandbox_create(cli):
    r = cli("sandbox", "create", "x", "--fork", "cart=example/cart:1", "--env", "cart:V=a\x85b\u2028c")
    assert r.exit_code == 0, r.output
    [env] = yaml.safe_load(r.output)["spec"]["forks"][0]["to"]["workload"]["env"]
    assert env == {"name": "V", "value": "a\x85b\u2028c"}

