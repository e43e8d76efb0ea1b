"""output: directory writes touch only what meshforge wrote, never follow links, and recover from
being killed at any moment; diffs read nothing through links."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from meshforge.output import MANIFEST, STAGING, OutputError, diff_tree, managed_files, write_tree


def tree(d) -> dict[str, str]:
    """Every regular file under d (not following links), by relative path."""
    out = {}
    for root, dirs, names in os.walk(d):
        for n in names:
            p = os.path.join(root, n)
            if not os.path.islink(p):
                out[os.path.relpath(p, d)] = open(p).read()
    return out


def test_write_then_rewrite_removes_only_stale_meshforge_files(tmp_path):
    out = tmp_path / "out"
    r = write_tree(out, {"a/x.yaml": "x: 1\n", "b.yaml": "b: 1\n"})
    assert (r.written, r.unchanged, r.removed) == (2, 0, 0)
    (out / "README.md").write_text("mine\n")
    (out / "a" / "notes.yaml").write_text("mine too\n")
    assert managed_files(out) == ["a/x.yaml", "b.yaml"]
    r = write_tree(out, {"b.yaml": "b: 2\n"})
    assert (r.written, r.unchanged, r.removed) == (1, 0, 1)
    assert not (out / "a" / "x.yaml").exists()
    assert (out / "README.md").read_text() == "mine\n" and (out / "a" / "notes.yaml").exists()
    r = write_tree(out, {"b.yaml": "b: 2\n"})
    assert (r.written, r.unchanged, r.removed) == (0, 1, 0)
    assert not (out / STAGING).exists()


def test_formats_share_a_directory_each_managing_only_its_own_files(tmp_path):
    out = tmp_path / "out"
    write_tree(out, {"ns/virtualservice-a.yaml": "vs: a\n", "ns/virtualservice-b.yaml": "vs: b\n"}, owner="istio")
    r = write_tree(out, {"ns/deployment-a-pr-1.yaml": "d: 1\n"}, owner="kubernetes")
    assert (r.written, r.removed) == (1, 0)  # istio's files are not kubernetes' to remove
    assert sorted(tree(out)) == [MANIFEST, "ns/deployment-a-pr-1.yaml", "ns/virtualservice-a.yaml",
                                 "ns/virtualservice-b.yaml"]
    r = write_tree(out, {"ns/virtualservice-a.yaml": "vs: a\n"}, owner="istio")
    assert (r.unchanged, r.removed) == (1, 1) and not (out / "ns" / "virtualservice-b.yaml").exists()
    assert (out / "ns" / "deployment-a-pr-1.yaml").exists()
    assert diff_tree(out, {"ns/deployment-a-pr-1.yaml": "d: 1\n"}, owner="kubernetes") == ""  # istio's not compared
    assert "virtualservice-a.yaml" in diff_tree(out, {}, owner="istio")
    before = tree(out)
    with pytest.raises(OutputError, match="written by another format \\(--format istio\\)"):
        write_tree(out, {"ns/virtualservice-a.yaml": "vs: a\n"}, owner="gateway-api")
    assert tree(out) == before  # refused whole: nothing written
    # a list from before owners were recorded: any render manages it, as before, and then owns it
    legacy = tmp_path / "legacy"
    write_tree(legacy, {"a.yaml": "a\n", "b.yaml": "b\n"})
    assert "  istio" not in (legacy / MANIFEST).read_text()
    r = write_tree(legacy, {"a.yaml": "a\n"}, owner="istio")
    assert r.removed == 1 and (legacy / MANIFEST).read_text().endswith("  a.yaml  istio\n")


def test_files_get_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o022)
    try:
        write_tree(tmp_path / "out", {"ns/a.yaml": "a\n"})
    finally:
        os.umask(old)
    assert oct((tmp_path / "out" / "ns" / "a.yaml").stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "out" / "ns").stat().st_mode & 0o777) == "0o755"


def test_empty_directories_left_by_removed_files_are_pruned(tmp_path):
    out = tmp_path / "out"
    write_tree(out, {"ns/a.yaml": "a\n"})
    write_tree(out, {})
    assert not (out / "ns").exists() and (out / MANIFEST).read_text() == ""


def test_paths_outside_the_directory_are_refused(tmp_path):
    for bad in ("../escape.yaml", "/etc/x.yaml", "a/../../b.yaml", "x\nREADME.md", ".hidden.yaml", ""):
        with pytest.raises(OutputError):
            write_tree(tmp_path / "out", {bad: "x\n"})
    assert not (tmp_path / "escape.yaml").exists() and tree(tmp_path / "out") == {}


def test_a_forged_list_cannot_make_meshforge_remove_or_overwrite_anything(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "victim.yaml").write_text("keep\n")
    (out / "README.md").write_text("keep\n")
    (out / "ns").mkdir()
    (out / "ns" / "user.yaml").write_text("keep\n")
    forged = "../victim.yaml\n/etc/passwd\nREADME.md\n" + "0" * 64 + "  ns/user.yaml\n"
    (out / MANIFEST).write_text(forged)
    write_tree(out, {"a.yaml": "a\n"})
    assert (tmp_path / "victim.yaml").read_text() == "keep\n"
    assert (out / "README.md").read_text() == "keep\n" and (out / "ns" / "user.yaml").read_text() == "keep\n"
    with pytest.raises(OutputError, match="not written by meshforge"):
        write_tree(out, {"ns/user.yaml": "mine now\n"})
    assert (out / "ns" / "user.yaml").read_text() == "keep\n"


def test_a_file_the_user_changed_is_kept_and_no_longer_listed(tmp_path):
    out = tmp_path / "out"
    write_tree(out, {"a.yaml": "a\n", "b.yaml": "b\n"})
    (out / "a.yaml").write_text("edited by hand\n")
    with pytest.raises(OutputError):  # not overwritten either
        write_tree(out, {"a.yaml": "a2\n", "b.yaml": "b\n"})
    r = write_tree(out, {"b.yaml": "b\n"})
    assert r.kept == ["a.yaml"] and (out / "a.yaml").read_text() == "edited by hand\n"
    assert managed_files(out) == ["b.yaml"]


def test_symlinks_inside_the_directory_are_never_followed(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.yaml").write_text("outside\n")
    write_tree(out, {"ns/x.yaml": "x\n", "top.yaml": "t\n"})
    # a listed sub-directory swapped for a link: neither written through nor removed through
    os.rename(out / "ns", tmp_path / "ns-moved")
    os.symlink(elsewhere, out / "ns")
    with pytest.raises(OutputError, match="symlink"):
        write_tree(out, {"ns/x.yaml": "new\n", "top.yaml": "t\n"})
    write_tree(out, {"top.yaml": "t\n"})  # removing ns/x.yaml through the link: skipped
    assert (elsewhere / "x.yaml").read_text() == "outside\n"
    # a listed file swapped for a link to a secret: not read, not removed through
    os.unlink(out / "top.yaml")
    os.symlink("/proc/self/environ", out / "top.yaml")
    text = diff_tree(out, {"top.yaml": "t\n"})
    assert "not compared" in text and "PATH=" not in text
    with pytest.raises(OutputError):
        write_tree(out, {"top.yaml": "t2\n"})
    assert os.path.islink(out / "top.yaml")


def test_diff_without_a_list_reads_no_links(tmp_path, monkeypatch):
    d = tmp_path / "committed"
    d.mkdir()
    (d / "a.yaml").write_text("a\n")
    os.symlink("/proc/self/environ", d / "env.yaml")
    monkeypatch.setenv("MESHFORGE_SECRET", "s3cr3t")
    text = diff_tree(d, {"a.yaml": "a\n"})
    assert text == "" and "s3cr3t" not in text


def test_diff_tree(tmp_path):
    out = tmp_path / "out"
    write_tree(out, {"a.yaml": "a: 1\n", "gone.yaml": "g\n"})
    assert diff_tree(out, {"a.yaml": "a: 1\n", "gone.yaml": "g\n"}) == ""
    text = diff_tree(out, {"a.yaml": "a: 2\n", "new.yaml": "n\n"})
    assert "--- a/a.yaml\n+++ b/a.yaml\n" in text and "-a: 1\n+a: 2\n" in text
    assert "--- a/gone.yaml\n+++ /dev/null\n" in text and "--- /dev/null\n+++ b/new.yaml\n" in text


WRITER = """
import json, sys, time
from pathlib import Path
from meshforge.output import write_tree
files = json.load(open(sys.argv[2]))
print("go", flush=True)
t0 = time.monotonic()
write_tree(Path(sys.argv[1]), files)
print(time.monotonic() - t0, flush=True)
"""


def _start(out, spec):
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(spec)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    assert p.stdout.readline() == "go\n"
    return p


def _files(n: int, tag: str) -> dict[str, str]:
    return {f"ns{i % 7}/obj-{i}.yaml": f"{tag}: {i}\n" * 20 for i in range(n)}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_render_is_never_called_current_and_the_next_one_finishes(tmp_path, sig):
    out = tmp_path / "out"
    old, new = _files(300, "old"), _files(450, "new")
    del new["ns0/obj-0.yaml"]  # something to remove too
    write_tree(out, old)
    spec = tmp_path / "new.json"
    spec.write_text(json.dumps(new))
    outcomes = set()
    probe = _start(tmp_path / "probe", spec)
    full = float(probe.stdout.readline())
    probe.wait()
    for attempt in range(6):
        write_tree(out, old)
        p = _start(out, spec)
        time.sleep(full * attempt / 5)  # from the start of the render to its end
        p.send_signal(sig)
        p.wait()
        state = tree(out)
        current = {k: v for k, v in state.items() if not k.startswith((".", "probe"))}
        try:
            text = diff_tree(out, new)
            called_current = text == ""
        except OutputError:
            outcomes.add("unfinished")
            called_current = False
        if called_current:
            assert current == new
        if sig != signal.SIGKILL and not (out / STAGING).exists():
            assert current in (old, new)  # Ctrl-C / SIGTERM: all or nothing, nothing left behind
        outcomes.add("new" if current == new else "old" if current == old else "partial")
        write_tree(out, new)  # the next render finishes the job
        assert {k: v for k, v in tree(out).items() if not k.startswith((".", "probe"))} == new
        assert not (out / STAGING).exists() and diff_tree(out, new) == ""
    print(sig, sorted(outcomes))  # which states the kills hit (varies with the machine); each was checked


def test_a_render_killed_after_its_commit_is_unfinished_until_replayed(tmp_path, monkeypatch):
    """The state a SIGKILL during apply leaves, made deterministically: the journal committed, half applied."""
    import meshforge.output as output

    out = tmp_path / "out"
    old, new = _files(40, "old"), _files(60, "new")
    del new["ns0/obj-0.yaml"]
    write_tree(out, old)

    def half_then_die(root, journal):
        tx = os.open(STAGING, os.O_RDONLY | os.O_DIRECTORY, dir_fd=root)
        for staged, rel in journal["put"][: len(journal["put"]) // 2]:
            *dirs, name = rel.split("/")
            d = output._open_dir(root, dirs, create=True)
            os.rename(staged, name, src_dir_fd=tx, dst_dir_fd=d)
            os.close(d)
        os.close(tx)
        raise SystemExit("killed")  # what SIGKILL leaves: nothing after this point runs

    monkeypatch.setattr(output, "_apply", half_then_die)
    monkeypatch.setattr(output, "_recover", lambda root: None)
    with pytest.raises(SystemExit):
        write_tree(out, new)
    monkeypatch.undo()
    assert (out / STAGING / "journal").exists()
    with pytest.raises(OutputError, match="unfinished render"):
        diff_tree(out, new)
    with pytest.raises(OutputError, match="unfinished render"):
        diff_tree(out, old)
    r = write_tree(out, new)  # replays the journal first, then finds nothing left to do
    assert (r.written, r.removed) == (0, 0)
    assert {k: v for k, v in tree(out).items() if not k.startswith(".")} == new
    assert diff_tree(out, new) == "" and not (out / STAGING).exists()


def test_staging_left_by_a_render_killed_before_its_commit_is_discarded(tmp_path):
    out = tmp_path / "out"
    write_tree(out, {"a.yaml": "a\n"})
    (out / STAGING).mkdir()
    (out / STAGING / "000000").write_text("half\n")
    assert diff_tree(out, {"a.yaml": "a\n"}) == ""  # uncommitted staging: the directory is as it was
    write_tree(out, {"a.yaml": "a\n"})
    assert not (out / STAGING).exists()
