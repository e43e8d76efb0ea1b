"""README.md as an executable contract: the Quick start and the "Try it locally" recipe run as pasted, the
outputs it shows are what the commands print, and every `meshforge` command it names exists with the flags
it uses."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest

from meshforge.cli import main
from meshforge.envoyproc import free_port
from meshforge.sampleapp import SampleApp

from .serve_harness import wait_until

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def section(title: str) -> str:
    """The text under a heading (any level), up to the next heading of the same or a higher level."""
    m = re.search(rf"^(#+) {re.escape(title)}\n", README, re.M)
    assert m, f"README has no section {title!r}"
    level = len(m[1])
    rest = README[m.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[:end.start()] if end else rest


def blocks(text: str, lang: str | None = None) -> list[str]:
    """Fenced code blocks (```lang ... ```) in `text`."""
    out = []
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        if lang is None or m[1] == lang:
            out.append(m[2])
    return out


def quick_start() -> list[str]:
    return blocks(section("Quick start"), "sh")


# -- every command the README names exists, with the flags it uses --------------------------------

def command_lines() -> list[str]:
    """Each `meshforge ...` command in a code block (continuations joined) or an inline code span."""
    out = []
    for block in blocks(README):
        lines: list[str] = []
        for line in block.splitlines():
            line = line.removeprefix("$ ")
            if lines and (lines[-1].endswith("\\") or (line.startswith(" ") and "meshforge " in lines[-1]
                                                        and not line.strip().startswith("meshforge"))):
                lines[-1] = lines[-1].rstrip("\\") + " " + line.strip()
            else:
                lines.append(line)
        for line in lines:
            for m in re.finditer(r"(?:^\s*|&&\s*|\|\s*|;\s*|\.venv/bin/)meshforge ([^\n#|;&>]*)", line):
                out.append(m[1])
    for span in re.findall(r"`([^`\n]+)`", README):
        for m in re.finditer(r"^meshforge ([^`|;&>]*)", span):
            out.append(m[1])
    return out


def resolve(words: list[str]) -> tuple[click.Command, list[str]] | None:
    cmd: click.Command = main
    path = []
    for w in words:
        if isinstance(cmd, click.Group) and w in cmd.commands:
            cmd = cmd.commands[w]
            path.append(w)
        else:
            break
    return (cmd, path) if path else None


def test_every_command_the_readme_shows_exists_with_its_flags():
    lines = command_lines()
    assert len(lines) > 25
    checked = 0
    for line in lines:
        words = line.split()
        if not words:
            continue
        found = resolve(words)
        assert found is not None, f"README names `meshforge {line}`, but there is no command {words[0]!r}"
        cmd, path = found
        flags = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
        for flag in re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", line[len(" ".join(path)):]):
            if flag in ("-", "--"):
                continue
            assert flag in flags, f"`meshforge {line}`: {' '.join(path)} has no option {flag} ({sorted(flags)})"
        checked += 1
    assert checked > 25


# -- outputs the README shows are what the commands print ----------------------------------------

@pytest.mark.parametrize("prompt", [p for p in re.findall(r"^\$ (meshforge (?:validate|explain) .*)$", README, re.M)])
def test_a_sample_output_is_what_the_command_prints(prompt):
    block = next(b for b in blocks(README) if b.startswith(f"$ {prompt}\n"))
    shown = block.split("\n", 1)[1]
    args = prompt.split()[1:]
    r = subprocess.run([sys.executable, "-m", "meshforge.cli", *args], cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, NO_COLOR="1"), timeout=60)
    assert r.stdout + r.stderr == shown, f"README shows:\n{shown}\nthe command prints:\n{r.stdout + r.stderr}"


# -- the Quick start, as pasted ---------------------------------------------------------------

def test_the_quick_start_is_two_commands_and_ci_runs_the_second():
    demo, tests = quick_start()[:2]
    assert demo.strip() == "python3 -m venv .venv && .venv/bin/pip install -q '.[demo]' && .venv/bin/meshforge demo"
    assert tests.strip().startswith("python3 -m venv .venv && .venv/bin/pip install -q '.[test]'")
    ci = (REPO / ".ci" / "run").read_text()
    assert "README.md" in ci and "Quick start" in ci  # .ci/run takes its test command from this README


def fresh_clone(dest: Path) -> Path:
    """The tracked files of this checkout (what a clone holds), without .git or a virtual environment."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def test_the_first_quick_start_command_runs_the_demo_as_pasted(tmp_path):
    clone = fresh_clone(tmp_path / "clone")
    demo = quick_start()[0].strip()
    r = subprocess.run(["bash", "-c", demo], cwd=clone, capture_output=True, text=True, timeout=900,
                       env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"NO_COLOR": "1"})
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    lines = [" ".join(line.split()) for line in r.stdout.splitlines()]
    assert "cart-pr-42.preview.localhost (preview URL) baseline cart-pr-42 baseline" in lines
    assert "no loss: every service that received 'cart-pr-42' passed it on" in lines


# -- "Try it locally", as pasted (with ports of its own) -----------------------------------------

RECIPE_PORTS = (18000, 18080, 15000, 15001, 8080, 9090, 9091)


def recipe(ports: dict[int, int]) -> str:
    [text] = blocks(section("Try it locally in minutes"), "sh")
    for given, mine in ports.items():
        text = re.sub(rf"(?<![0-9]){given}(?![0-9])", str(mine), text)
    return text


def run_recipe(cwd: Path, script: str) -> tuple[int, str, str]:
    venv = cwd / ".venv"
    if not venv.exists():
        venv.symlink_to(sys.prefix)  # the Quick start's virtual environment: this one
    p = subprocess.Popen(["bash", "-c", ". .venv/bin/activate\n" + script + "\nkill %1 %2\nwait"], cwd=cwd,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env={k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")})
    try:
        out, err = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    return p.returncode, out, err


def test_the_try_it_locally_recipe_runs_as_pasted_and_again(tmp_path):
    import json

    with SampleApp("api-v1") as v1, SampleApp("api-new") as new:
        ports = {p: free_port() for p in RECIPE_PORTS} | {9090: v1.port, 9091: new.port}
        script = recipe(ports)
        assert "mkdir -p specs" in script and "until curl" in script
        for attempt in (1, 2):  # running it again is safe
            code, out, err = run_recipe(tmp_path, script)
            assert code in (0, 143), err
            answers, rest = [], out.strip()
            while rest:  # curl prints each answer without a newline
                answer, end = json.JSONDecoder().raw_decode(rest)
                answers.append(answer)
                rest = rest[end:].strip()
            assert [a["name"] for a in answers] == ["api-v1", "api-new"], (attempt, out, err)
            assert "[info]" not in err  # Envoy's info log does not flood the terminal
            wait_until(lambda: subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{ports[18000]}"],
                                              capture_output=True).returncode != 0, 10, what="serve stopped")


@pytest.mark.parametrize("fmt", ["istio", "gateway-api", "kubernetes", "xds", "envoy-static"])
def test_the_readme_example_renders_in_every_backend(cli, fmt):
    r = cli("render", REPO / "examples" / "shop", "--format", fmt)
    assert r.exit_code == 0, r.output


def test_the_layout_names_every_module_of_the_package():
    """A newcomer finds each module in the README's layout: every file and folder of the package's top level, and
    every backend, is named there."""
    import meshforge

    layout = next(b for b in blocks(section("Layout")) if b.startswith("src/meshforge/"))
    package = Path(meshforge.__file__).resolve().parent
    names = [p.name + ("/" if p.is_dir() else "") for p in package.iterdir()
             if p.name != "__init__.py" and not p.name.startswith((".", "__")) and (p.is_dir() or p.suffix == ".py")]
    names += [f"emit/{p.name}" for p in (package / "emit").glob("*.py") if p.name != "__init__.py"]
    missing = sorted(n for n in names if not re.search(rf"(?<![\w/]){re.escape(n)}", layout))
    assert names and missing == []
