"""output: directory writes touch only what meshforge wrote; diffs against a directory."""

from __future__ import annotations

import pytest

from meshforge.output import MANIFEST, diff_tree, managed_files, write_tree


def test_write_then_rewrite_removes_only_stale_meshforge_files(tmp_path):
    out = tmp_path / "out"
    assert write_tree(out, {"a/x.yaml": "x: 1\n", "b.yaml": "b: 1\n"}) == (2, 0, 0)
    (out / "README.md").write_text("mine\n")
    (out / "a" / "notes.yaml").write_text("mine too\n")
    assert sorted(managed_files(out)) == ["a/x.yaml", "b.yaml"]
    assert write_tree(out, {"b.yaml": "b: 2\n"}) == (1, 0, 1)
    assert not (out / "a" / "x.yaml").exists()
    assert (out / "README.md").read_text() == "mine\n" and (out / "a" / "notes.yaml").exists()
    assert write_tree(out, {"b.yaml": "b: 2\n"}) == (0, 1, 0)
    assert not [p for p in out.rglob("*.tmp")]


def test_empty_directories_left_by_removed_files_are_pruned(tmp_path):
    out = tmp_path / "out"
    write_tree(out, {"ns/a.yaml": "a\n"})
    write_tree(out, {})
    assert not (out / "ns").exists() and (out / MANIFEST).read_text() == ""


def test_paths_outside_the_directory_are_refused(tmp_path):
    with pytest.raises(ValueError):
        write_tree(tmp_path / "out", {"../escape.yaml": "x\n"})
    assert not (tmp_path / "escape.yaml").exists()


def test_a_forged_manifest_entry_outside_the_directory_is_ignored(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "victim.yaml").write_text("keep\n")
    (out / MANIFEST).write_text("../victim.yaml\n/etc/passwd\n")
    write_tree(out, {"a.yaml": "a\n"})
    assert (tmp_path / "victim.yaml").read_text() == "keep\n"


def test_diff_tree(tmp_path):
    out = tmp_path / "out"
    write_tree(out, {"a.yaml": "a: 1\n", "gone.yaml": "g\n"})
    assert diff_tree(out, {"a.yaml": "a: 1\n", "gone.yaml": "g\n"}) == ""
    text = diff_tree(out, {"a.yaml": "a: 2\n", "new.yaml": "n\n"})
    assert "--- a/a.yaml\n+++ b/a.yaml\n" in text and "-a: 1\n+a: 2\n" in text
    assert "--- a/gone.yaml\n+++ /dev/null\n" in text and "--- /dev/null\n+++ b/new.yaml\n" in text
