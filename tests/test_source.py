"""YAML loading: positions, safety (tags, duplicate keys), and input limits."""

import os

import pytest

from meshforge import source
from meshforge.diagnostics import Diagnostics


def parse(text: str):
    d = Diagnostics()
    return source.parse_text(text, "f.yaml", d), d.items


def test_positions_are_indexed_by_json_pointer():
    docs, diags = parse("a: 1\nb:\n  - x\n  - {c/d: 2}\n---\nk: v\n")
    assert not diags
    assert [d.data for d in docs] == [{"a": 1, "b": ["x", {"c/d": 2}]}, {"k": "v"}]
    assert docs[0].positions["/b/1/c~1d"] == (4, 11)
    assert docs[0].key_positions["/b"] == (2, 1)
    assert docs[0].span("/b/1/missing").line == 4  # nearest ancestor that exists
    assert docs[1].index == 1 and docs[1].positions[""] == (6, 1)


def test_duplicate_keys_are_errors_with_both_positions():
    _, diags = parse("a: 1\nb: 2\na: 3\n")
    assert [(d.code, d.span.line, d.span.column) for d in diags] == [("MF002", 3, 1)]
    assert "first defined at line 1" in diags[0].message


def test_only_core_tags_are_accepted():
    for text in ("x: !!python/object/apply:os.system ['true']\n", "x: !!binary aGk=\n", "x: !custom 1\n",
                 "x: !!set {a}\n"):
        docs, diags = parse(text)
        assert docs == [] and [d.code for d in diags] == ["MF006"], text


def test_timestamps_stay_strings_and_merge_keys_are_refused():
    docs, _ = parse("t: 2026-12-01T00:00:00Z\n")
    assert docs[0].data == {"t": "2026-12-01T00:00:00Z"}
    _, diags = parse("a: &a {x: 1}\nb:\n  <<: *a\n")
    assert [d.code for d in diags] == ["MF006"] and "merge" in diags[0].message


def test_alias_expansion_is_bounded():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i-1}"] * 10) + "]")
    docs, diags = parse("\n".join(lines) + "\n")
    assert docs == [] and diags[0].code == "MF003" and "expands" in diags[0].message


def test_document_count_and_file_size_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(source, "MAX_DOCUMENTS_PER_FILE", 3)
    docs, diags = parse("---\na: 1\n" * 5)
    assert len(docs) == 3 and diags[0].code == "MF003"
    monkeypatch.setattr(source, "MAX_FILE_BYTES", 10)
    big = tmp_path / "big.yaml"
    big.write_text("a: 12345678901234567890\n")
    d = Diagnostics()
    assert source.load_paths([str(big)], d) == [] and d.items[0].code == "MF003"


def test_syntax_errors_carry_line_and_column():
    _, diags = parse("a: [1, 2\nb: 3\n")
    assert diags[0].code == "MF001" and diags[0].span.line >= 2


def test_directories_are_read_recursively_in_sorted_order(tmp_path):
    for name in ("b/z.yaml", "a.yml", "b/a.yaml", "c.txt", ".hidden/x.yaml"):
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("k: v\n")
    d = Diagnostics()
    files = source.expand_paths([str(tmp_path)], d)
    assert [os.path.relpath(f, tmp_path) for f in files] == ["a.yml", "b/a.yaml", "b/z.yaml"]


def test_missing_path_and_non_utf8(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_bytes(b"a: \xff\n")
    d = Diagnostics()
    source.load_paths([str(tmp_path / "nope"), str(bad)], d)
    assert [x.code for x in d.items] == ["MF004", "MF004"]


def test_total_input_size_is_bounded(tmp_path, monkeypatch):
    from meshforge.pipeline import Workspace

    for i in range(3):
        (tmp_path / f"{i}.yaml").write_text("kind: ConfigMap\napiVersion: v1\nk: " + "x" * 100 + "\n")
    monkeypatch.setattr(source, "MAX_TOTAL_BYTES", 280)
    d = Diagnostics()
    source.load_paths([str(tmp_path)], d)
    assert [x.code for x in d.items] == ["MF003"]
    model, diags = Workspace([str(tmp_path)]).compile()
    assert model is None and [x.code for x in diags.items] == ["MF003"]


@pytest.mark.parametrize("text", ["a: 1\n", "a: [1, [2, [3, {b: c}]]]\nd: {e: [f, g]}\n", "- x\n- [y, z]\n- {}\n",
                                  "hosts: ['*.example.com']\n", "a: &x {b: [1, 2]}\nc: *x\nd: *x\n", "plain"])
def test_a_document_without_aliases_is_measured_as_a_tree_with_the_same_result(text):
    """parse_text measures alias-free documents level by level (nothing is shared in a tree); the counts and
    depth are those of the general measure, and a file that may hold an alias ('*') takes the general way."""
    import yaml

    from meshforge.source import _measure_tree, measure

    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if "&" not in text:
        assert _measure_tree(node) == measure(node)
    else:  # a shared node is walked once per use level by level: exponential for nested aliases, endless for a
        # recursive one; the general way is linear in the composed graph
        (doc,) = source.parse_text(text, "a.yaml", Diagnostics())
        assert doc.nodes == measure(node)[0]


def test_a_file_is_read_whole_up_to_the_limit_whatever_size_it_said_it_had(tmp_path):
    """`_read_at_most` reads the size fstat gave, then on (a file that grew after it was stat-ed) until the
    end or the limit: never a byte past the limit, nothing lost before it."""
    import os

    from meshforge.source import _read_at_most

    f = tmp_path / "f"
    data = bytes(range(256)) * 1000  # 256,000 bytes
    f.write_bytes(data)

    def read(limit: int, size: int) -> bytes:
        fd = os.open(f, os.O_RDONLY)
        try:
            return _read_at_most(fd, limit, size)
        finally:
            os.close(fd)

    assert read(10**7, len(data)) == data
    assert read(10**7, 3) == data  # it said 3 bytes and had more
    assert read(1000, len(data)) == data[:1000]  # the limit, exactly
    assert read(100_001, 5) == data[:100_001]
    f.write_bytes(b"")
    assert read(10, 0) == b""
