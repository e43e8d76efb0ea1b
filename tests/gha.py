"""A GitHub Actions job runner for tests: every `run:` step of a workflow (and of the composite actions it
uses) runs in bash as a hosted runner runs it, with `${{ }}` expressions evaluated, `if:` conditions
decided, and GITHUB_OUTPUT / GITHUB_ENV / GITHUB_PATH / GITHUB_STEP_SUMMARY honoured. `uses:` steps of
actions that are not composite actions of this repository are emulated by handlers the test gives
(`actions/checkout` is a `git clone` of a local repository standing in for GitHub).

The expression language is GitHub's (docs: "Evaluate expressions in workflows and actions"): literals,
property access, `!`, `==`, `!=`, `<`, `>`, `&&`, `||` (which return an operand, not a boolean), string
comparison ignoring case, loose equality across types by number, and the functions the project uses.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||<=|>=|[!()<>,\[\]])"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_*][A-Za-z0-9_-]*)*))")


class ExpressionError(Exception):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, at = [], 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        m = _TOKEN.match(text, at)
        if not m:
            raise ExpressionError(f"cannot read {text[at:]!r} in {text!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        at = m.end()
    return out


def _number(v) -> float:
    if v is None:
        return 0.0
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        if s == "":
            return 0.0
        try:
            return float(int(s, 16)) if s.lower().startswith("0x") else float(s)
        except ValueError:
            return math.nan
    return math.nan


def truthy(v) -> bool:
    if v is None or v is False or v == "":
        return False
    if isinstance(v, int | float) and not isinstance(v, bool):
        return not (v == 0 or math.isnan(v))
    return True


def _equal(a, b) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if type(a) is type(b) and not isinstance(a, str | int | float | bool | type(None)):
        return a is b
    return _number(a) == _number(b)


def as_text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dict | list):
        return json.dumps(v)
    return str(v)


class Expression:
    def __init__(self, text: str, context: dict, functions: dict[str, Callable]):
        self.text, self.tokens, self.at = text, _tokens(text), 0
        self.context, self.functions = context, functions

    def value(self):
        v = self._or()
        if self.at != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.at][1]!r} in {self.text!r}")
        return v

    def _peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def _take(self, op: str | None = None) -> tuple[str, str]:
        if self.at >= len(self.tokens) or (op is not None and self.tokens[self.at][1] != op):
            raise ExpressionError(f"expected {op!r} in {self.text!r}")
        self.at += 1
        return self.tokens[self.at - 1]

    def _or(self):
        v = self._and()
        while self._peek() == "||":
            self._take()
            w = self._and()
            v = v if truthy(v) else w
        return v

    def _and(self):
        v = self._cmp()
        while self._peek() == "&&":
            self._take()
            w = self._cmp()
            v = w if truthy(v) else v
        return v

    def _cmp(self):
        v = self._unary()
        while self._peek() in ("==", "!=", "<", ">", "<=", ">="):
            op = self._take()[1]
            w = self._unary()
            if op in ("==", "!="):
                v = _equal(v, w) == (op == "==")
            else:
                a, b = (v.lower(), w.lower()) if isinstance(v, str) and isinstance(w, str) else (_number(v), _number(w))
                v = {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        return v

    def _unary(self):
        if self._peek() == "!":
            self._take()
            return not truthy(self._unary())
        return self._primary()

    def _primary(self):
        kind, text = self._take()
        if text == "(":
            v = self._or()
            self._take(")")
            return v
        if kind == "num":
            return float(text)
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind != "name":
            raise ExpressionError(f"unexpected {text!r} in {self.text!r}")
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self._peek() == "(":
            self._take()
            args = []
            while self._peek() != ")":
                args.append(self._or())
                if self._peek() == ",":
                    self._take()
            self._take(")")
            fn = self.functions.get(text.lower())
            if fn is None:
                raise ExpressionError(f"unknown function {text}() in {self.text!r}")
            return fn(*args)
        node = self.context
        for part in text.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        while self._peek() == "[":
            self._take()
            key = self._or()
            self._take("]")
            node = node.get(as_text(key)) if isinstance(node, dict) else None
        return node


def _format(fmt: str, *args) -> str:
    return re.sub(r"\{(\d+)\}", lambda m: as_text(args[int(m[1])]), fmt).replace("{{", "{").replace("}}", "}")


@dataclass
class StepResult:
    name: str
    ran: bool
    ok: bool
    outputs: dict[str, str] = field(default_factory=dict)
    log: str = ""


@dataclass
class JobResult:
    ok: bool
    steps: list[StepResult]
    summary: str

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)

    def ran(self) -> list[str]:
        return [s.name for s in self.steps if s.ran]


class Runner:
    """Runs one job of a workflow. `uses` maps an action reference's prefix (`actions/checkout`, or the
    prefix of this repository's actions) to a handler `(runner, step, with_, env) -> outputs dict`, or to a
    directory holding a composite `action.yml`."""

    def __init__(self, workspace: Path, github: dict, uses: dict[str, Callable | Path], path: list[str],
                 secrets: dict | None = None, tool_cache: Path | None = None, extra_env: dict | None = None,
                 variables: dict | None = None):
        self.workspace = workspace
        self.github = github
        self.uses = uses
        self.path = list(path)  # PATH entries before the system's (stubs, GITHUB_PATH additions)
        self.secrets = secrets or {}
        self.variables = variables or {}  # the repository's variables (the `vars` context)
        self.temp = Path(tempfile.mkdtemp(prefix="runner-temp-", dir=workspace.parent))
        self.tool_cache = tool_cache or self.temp / "toolcache"
        self.env: dict[str, str] = {}  # GITHUB_ENV additions
        self.summary = self.temp / "step_summary.md"
        self.summary.write_text("")
        self.extra_env = extra_env or {}
        self.expressions: list[str] = []  # every expression evaluated (a test checks they parsed)

    # -- expressions ----------------------------------------------------------------------------
    def evaluate(self, text: str, context: dict, status: bool = True):
        self.expressions.append(text)
        fns = {"success": lambda: status, "always": lambda: True, "failure": lambda: not status,
               "cancelled": lambda: False,
               "startswith": lambda a, b: as_text(a).lower().startswith(as_text(b).lower()),
               "endswith": lambda a, b: as_text(a).lower().endswith(as_text(b).lower()),
               "contains": lambda a, b: (any(_equal(x, b) for x in a) if isinstance(a, list)
                                         else as_text(b).lower() in as_text(a).lower()),
               "format": _format, "tojson": lambda v: json.dumps(v, indent=2), "fromjson": json.loads}
        return Expression(text, context, fns).value()

    def fill(self, value, context: dict):
        """`${{ }}` in a string (or the strings of a dict) replaced by their values."""
        if isinstance(value, dict):
            return {k: self.fill(v, context) for k, v in value.items()}
        if not isinstance(value, str):
            return as_text(value) if value is not None else ""
        return re.sub(r"\$\{\{(.*?)\}\}", lambda m: as_text(self.evaluate(m[1].strip(), context)), value)

    def condition(self, cond, context: dict, status: bool) -> bool:
        if cond is None:
            return status
        if isinstance(cond, bool):
            return cond
        text = str(cond).strip()
        if text.startswith("${{") and text.endswith("}}"):
            text = text[3:-2].strip()
        if not re.search(r"\b(success|failure|always|cancelled)\(", text):
            return status and truthy(self.evaluate(text, context, status))
        return truthy(self.evaluate(text, context, status))

    # -- steps ----------------------------------------------------------------------------------
    def run_job(self, workflow: dict, job: str) -> JobResult:
        wf_env = workflow.get("env") or {}
        spec = workflow["jobs"][job]
        context = {"github": self.github, "env": {}, "steps": {}, "runner": {"temp": str(self.temp), "os": "Linux"},
                   "secrets": self.secrets, "vars": self.variables}
        context["env"] = {k: self.fill(v, context) for k, v in {**wf_env, **(spec.get("env") or {})}.items()}
        return self.run_steps(spec["steps"], context, dict(context["env"]))

    def run_steps(self, steps: list[dict], context: dict, env: dict[str, str],
                  action_path: Path | None = None) -> JobResult:
        results: list[StepResult] = []
        status = True
        for i, step in enumerate(steps):
            name = step.get("name") or step.get("id") or step.get("uses") or f"step {i}"
            scope = {**context, "env": {**env, **self.env}}
            if not self.condition(step.get("if"), scope, status):
                results.append(StepResult(name, False, True))
                continue
            step_env = {**env, **self.env, **{k: self.fill(v, scope) for k, v in (step.get("env") or {}).items()}}
            scope["env"] = step_env
            if "run" in step:
                res = self._run(name, self.fill(step["run"], scope), step, step_env, action_path)
            else:
                res = self._uses(name, step, scope, step_env)
            results.append(res)
            if step.get("id"):
                context["steps"][step["id"]] = {"outputs": res.outputs,
                                                "outcome": "success" if res.ok else "failure",
                                                "conclusion": "success" if res.ok else "failure"}
            if not res.ok and not step.get("continue-on-error"):
                status = False
        return JobResult(status, results, self.summary.read_text())

    def _process_env(self, step_env: dict[str, str], action_path: Path | None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_"))}
        base["PATH"] = ":".join(self.path + [os.environ["PATH"]])
        g = self.github
        out = {**base, **self.extra_env, "CI": "true", "GITHUB_ACTIONS": "true",
               "GITHUB_WORKSPACE": str(self.workspace), "GITHUB_REPOSITORY": g["repository"],
               "GITHUB_REPOSITORY_OWNER": g["repository_owner"], "GITHUB_EVENT_NAME": g["event_name"],
               "GITHUB_HEAD_REF": as_text(g.get("head_ref")), "GITHUB_SHA": as_text(g.get("sha")),
               "GITHUB_ACTOR": as_text(g.get("actor")), "GITHUB_SERVER_URL": as_text(g.get("server_url")),
               "GITHUB_STEP_SUMMARY": str(self.summary), "RUNNER_TEMP": str(self.temp),
               "RUNNER_TOOL_CACHE": str(self.tool_cache), "RUNNER_OS": "Linux"}
        if action_path is not None:
            out["GITHUB_ACTION_PATH"] = str(action_path)
        out.update(step_env)
        return out

    def _run(self, name: str, script: str, step: dict, step_env: dict[str, str],
             action_path: Path | None) -> StepResult:
        files = {k: self.temp / f"{k}-{len(os.listdir(self.temp))}" for k in ("output", "env", "path")}
        for f in files.values():
            f.write_text("")
        env = self._process_env(step_env, action_path)
        env.update({"GITHUB_OUTPUT": str(files["output"]), "GITHUB_ENV": str(files["env"]),
                    "GITHUB_PATH": str(files["path"])})
        script_file = self.temp / f"step-{len(os.listdir(self.temp))}.sh"
        script_file.write_text(script)
        cwd = self.workspace / step["working-directory"] if step.get("working-directory") else self.workspace
        shell = step.get("shell", "bash")
        assert shell == "bash", f"{name}: only bash steps are run here"
        r = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=600)
        self.env.update(_read_pairs(files["env"].read_text()))
        added = [line for line in files["path"].read_text().splitlines() if line.strip()]
        self.path = list(reversed(added)) + self.path
        return StepResult(name, True, r.returncode == 0, _read_pairs(files["output"].read_text()),
                          r.stdout + r.stderr)

    def _uses(self, name: str, step: dict, scope: dict, step_env: dict[str, str]) -> StepResult:
        ref = step["uses"]
        with_ = {k: self.fill(v, scope) for k, v in (step.get("with") or {}).items()}
        handler = next((h for prefix, h in sorted(self.uses.items(), key=lambda kv: -len(kv[0]))
                        if ref == prefix or ref.startswith(prefix + "@")), None)
        if handler is None:
            raise KeyError(f"{name}: no handler for uses: {ref}")
        if isinstance(handler, Path):
            return self._composite(name, handler, with_, scope)
        try:
            outputs = handler(self, with_, step_env) or {}
        except subprocess.CalledProcessError as e:
            return StepResult(name, True, False, {}, f"{e}: {e.stdout}{e.stderr}")
        return StepResult(name, True, True, outputs)

    def _composite(self, name: str, directory: Path, with_: dict, scope: dict) -> StepResult:
        action = yaml.safe_load((directory / "action.yml").read_text())
        assert action["runs"]["using"] == "composite"
        inputs = {}
        base = {"github": self.github, "runner": scope["runner"], "env": scope["env"], "steps": {}}
        for key, spec in (action.get("inputs") or {}).items():
            given = with_.get(key)
            if given is None:
                assert not spec.get("required"), f"{name}: input {key} is required"
                given = self.fill(spec.get("default", ""), base)
            inputs[key] = given
        context = {**base, "inputs": inputs, "steps": {}}
        result = self.run_steps(action["runs"]["steps"], context, dict(scope["env"]), directory)
        outputs = {k: self.fill(v.get("value", ""), context) for k, v in (action.get("outputs") or {}).items()}
        return StepResult(name, True, result.ok, outputs, "\n".join(s.log for s in result.steps))


def _read_pairs(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT / GITHUB_ENV: `name=value` lines and `name<<DELIMITER` blocks."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delim = line.split("<<", 1)
            value = []
            i += 1
            while i < len(lines) and lines[i] != delim:
                value.append(lines[i])
                i += 1
            out[key] = "\n".join(value)
        elif "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
        i += 1
    return out
