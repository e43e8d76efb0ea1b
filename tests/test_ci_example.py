"""The worked CI example (examples/ci/sandbox.yaml) and this repository's GitHub Actions (action.yml,
comment/action.yml), run step by step as a hosted runner runs them: every `run:` step in bash, with the
expressions filled in, against a local bare git repository standing in for GitHub. Only docker and the
GitHub API are stubbed (they are called through the `docker` and `gh` commands). The GitOps branch must end
as expected after each story: a pull request opened, pushed again and closed; a push race lost and retried;
a push refused for another reason; the scheduled run after a sandbox expired; a pull request from a fork.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from meshforge.lower import fork_name
from meshforge.sandboxgen import name_from_branch

from .gha import Runner

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "ci"
WORKFLOW = yaml.safe_load((EXAMPLE / "sandbox.yaml").read_text())
BRANCH = "feature/Cart_Totals"
NAME = name_from_branch(BRANCH)

DOCKER = """#!/bin/sh
# docker, stubbed: each call is recorded; `login --password-stdin` reads the password
for a in "$@"; do [ "$a" = --password-stdin ] && cat > /dev/null; done
python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$STUBS/docker.log"
"""

KUBECTL = """#!/bin/sh
# kubectl, stubbed: each call is recorded and succeeds (the fork is ready)
python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$STUBS/kubectl.log"
"""

GH = r'''#!/usr/bin/env python3
"""gh, stubbed: the GitHub REST API calls the comment action makes, over a JSON file of comments."""
import json, os, sys
state_file = os.path.join(os.environ["STUBS"], "github.json")
state = json.load(open(state_file)) if os.path.exists(state_file) else {"comments": [], "calls": []}
args = sys.argv[1:]
assert args[0] == "api", args
method, path, fields = "GET", None, {}
i = 1
while i < len(args):
    a = args[i]
    if a == "-X":
        method, i = args[i + 1], i + 2
    elif a == "-f":
        k, _, v = args[i + 1].partition("=")
        fields[k], i = v, i + 2
    elif a == "--paginate":
        i += 1
    else:
        path, i = a, i + 1
state["calls"].append([method, path])
out = None
parts = path.split("?")[0].split("/")
if method == "GET" and parts[-1] == "comments":
    number = int(parts[-2])
    out = [c for c in state["comments"] if c["issue"] == number]
elif method == "POST" and parts[-1] == "comments":
    c = {"id": 1000 + len(state["comments"]), "issue": int(parts[-2]), "body": fields["body"]}
    state["comments"].append(c)
    out = c
elif method == "PATCH" and parts[-2] == "comments":
    c = next(c for c in state["comments"] if c["id"] == int(parts[-1]))
    c["body"] = fields["body"]
    out = c
else:
    sys.exit(f"gh stub: unexpected call {method} {path}")
json.dump(state, open(state_file, "w"))
print(json.dumps(out))
'''


def git(*args: str, cwd: Path | None = None) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def tool_cache(tmp_path_factory) -> Path:
    """The runners' tool cache, shared: the meshforge action installs meshforge (for real) once."""
    return tmp_path_factory.mktemp("toolcache")


class GitHub:
    """A repository `acme/shop` (branches main, gitops and the pull request's), the stubs, and runs."""

    def __init__(self, root: Path, tool_cache: Path):
        self.root = root
        self.origin = root / "github" / "acme" / "shop.git"
        self.origin.parent.mkdir(parents=True)
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.origin))
        work = root / "seed"
        git("init", "--quiet", "--initial-branch=main", str(work))
        (work / "src" / "cartservice").mkdir(parents=True)
        (work / "src" / "cartservice" / "Dockerfile").write_text("FROM scratch\n")
        (work / ".github" / "workflows").mkdir(parents=True)
        shutil.copy(EXAMPLE / "sandbox.yaml", work / ".github" / "workflows" / "sandbox.yaml")
        git("add", "-A", cwd=work)
        git("commit", "--quiet", "-m", "app", cwd=work)
        git("remote", "add", "origin", str(self.origin), cwd=work)
        git("push", "--quiet", "origin", "main", cwd=work)
        git("checkout", "--quiet", "--orphan", "gitops", cwd=work)
        git("rm", "--quiet", "-rf", ".", cwd=work)
        shutil.copytree(EXAMPLE / "gitops", work, dirs_exist_ok=True)
        git("add", "-A", cwd=work)
        git("commit", "--quiet", "-m", "baseline", cwd=work)
        git("push", "--quiet", "origin", "gitops", cwd=work)
        self.seed = work
        self.stubs = root / "stubs"
        self.stubs.mkdir()
        for name, text in (("docker", DOCKER), ("gh", GH), ("kubectl", KUBECTL)):
            (self.stubs / name).write_text(text)
            (self.stubs / name).chmod(0o755)
        self.tool_cache = tool_cache
        self.heads: dict[int, str] = {}
        self.runs = 0

    def push_head(self, number: int, message: str) -> str:
        """A commit on the pull request's branch; its sha."""
        git("checkout", "--quiet", "main", cwd=self.seed)
        git("checkout", "--quiet", "-B", BRANCH, cwd=self.seed)
        (self.seed / "src" / "cartservice" / "change.txt").write_text(message)
        git("add", "-A", cwd=self.seed)
        git("commit", "--quiet", "-m", message, cwd=self.seed)
        git("push", "--quiet", "--force", "origin", BRANCH, cwd=self.seed)
        self.heads[number] = git("rev-parse", "HEAD", cwd=self.seed)
        return self.heads[number]

    def pull_request(self, action: str, number: int = 7, fork: bool = False) -> dict:
        head = self.heads.get(number) or self.push_head(number, "first")
        pr = {"number": number, "head": {"sha": head, "ref": BRANCH,
                                          "repo": {"full_name": "mallory/shop" if fork else "acme/shop"}}}
        return {"event_name": "pull_request", "event": {"action": action, "number": number, "pull_request": pr},
                "head_ref": BRANCH, "sha": head}

    def schedule(self) -> dict:
        return {"event_name": "schedule", "event": {"schedule": "*/30 * * * *"}, "head_ref": "", "sha": ""}

    def checkout(self, runner: Runner, with_: dict, env: dict) -> dict:
        dest = runner.workspace / with_.get("path", "")
        git("clone", "--quiet", str(self.origin), str(dest))
        git("checkout", "--quiet", with_["ref"], cwd=dest)
        return {}

    def run(self, event: dict, extra_env: dict | None = None, variables: dict | None = None):
        self.runs += 1
        workspace = self.root / f"run-{self.runs}" / "workspace"
        workspace.mkdir(parents=True)
        github = {"repository": "acme/shop", "repository_owner": "Acme", "actor": "alice", "token": "ghs_x",
                  "server_url": "https://github.com", "workspace": str(workspace), **event}
        runner = Runner(workspace, github, {
            "actions/checkout": self.checkout,
            "actions/setup-python": lambda runner, with_, env: {},
            "meshforge-dev/meshforge": REPO,
            "meshforge-dev/meshforge/comment": REPO / "comment",
        }, [str(self.stubs)], secrets={"GITHUB_TOKEN": "ghs_x"}, tool_cache=self.tool_cache,
            extra_env={"STUBS": str(self.stubs), **(extra_env or {})}, variables=variables)
        result = runner.run_job(WORKFLOW, "sandbox")
        return result, runner

    # -- what the story left behind -------------------------------------------------------------
    def gitops(self) -> Path:
        """A fresh checkout of the GitOps branch as it is now."""
        dest = self.root / f"gitops-{self.runs}-{len(os.listdir(self.root))}"
        git("clone", "--quiet", "--branch", "gitops", str(self.origin), str(dest))
        return dest

    def gitops_log(self) -> list[str]:
        return git("--git-dir", str(self.origin), "log", "--format=%s", "gitops").splitlines()

    def docker(self) -> list[list[str]]:
        log = self.stubs / "docker.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def github_state(self) -> dict:
        f = self.stubs / "github.json"
        return json.loads(f.read_text()) if f.exists() else {"comments": [], "calls": []}


@pytest.fixture
def github(tmp_path, tool_cache) -> GitHub:
    return GitHub(tmp_path, tool_cache)


def rendered(checkout: Path) -> list[str]:
    return sorted(str(p.relative_to(checkout / "rendered")) for p in (checkout / "rendered").rglob("*.yaml"))


def ok(result) -> None:
    assert result.ok, "\n\n".join(f"--- {s.name}\n{s.log}" for s in result.steps if s.ran)


def test_a_pull_request_gets_a_sandbox_a_comment_updated_in_place_and_cleanup_on_close(github):
    result, _ = github.run(github.pull_request("opened"))
    ok(result)
    assert result.ran() == ["meshforge-dev/meshforge@main", "plan", "actions/checkout@v4", "actions/checkout@v4",
                            "build and push the image", "update the GitOps branch", "meshforge-dev/meshforge/comment@main"]
    image = f"ghcr.io/acme/cartservice:{github.heads[7]}"  # the owner lower-cased: registries want that
    assert github.docker() == [["login", "ghcr.io", "--username", "alice", "--password-stdin"],
                               ["build", "--tag", image, "app/src/cartservice"], ["push", image]]
    repo = github.gitops()
    sandbox = yaml.safe_load((repo / "sandboxes/pr-7.yaml").read_text())
    assert sandbox["metadata"] == {"name": NAME, "labels": {"pr": "pr-7"}}
    files = rendered(repo)
    deployments = [f for f in files if f.startswith("kubernetes/default/deployment-")]
    assert deployments == [f"kubernetes/default/deployment-{fork_name('cartservice', NAME)}.yaml"]
    body = yaml.safe_load((repo / "rendered" / deployments[0]).read_text())
    assert body["spec"]["template"]["spec"]["containers"][0]["image"] == image
    assert "istio/default/virtualservice-meshforge-cartservice.yaml" in files
    assert f"istio/default/virtualservice-meshforge.edge.preview.{NAME}.yaml" in files
    assert github.gitops_log()[0] == "meshforge: pr-7 (opened)"
    [comment] = github.github_state()["comments"]
    assert comment["issue"] == 7 and comment["body"].startswith("<!-- meshforge-sandbox -->\n")
    assert f"https://{NAME}.preview.example.com/" in comment["body"] and image in comment["body"]

    github.push_head(7, "second")  # a new push: a new image, the same sandbox and comment
    result, _ = github.run(github.pull_request("synchronize"))
    ok(result)
    repo = github.gitops()
    body = yaml.safe_load((repo / "rendered" / deployments[0]).read_text())
    assert body["spec"]["template"]["spec"]["containers"][0]["image"] == f"ghcr.io/acme/cartservice:{github.heads[7]}"
    state = github.github_state()
    assert len(state["comments"]) == 1 and github.heads[7] in state["comments"][0]["body"]  # updated in place
    assert [m for m, _ in state["calls"]] == ["GET", "POST", "GET", "PATCH"]

    result, _ = github.run(github.pull_request("closed"))
    ok(result)
    assert "build and push the image" not in result.ran()
    repo = github.gitops()
    assert not (repo / "sandboxes/pr-7.yaml").exists()
    files = rendered(repo)
    assert not [f for f in files if NAME in f] and not [f for f in files if f.startswith("kubernetes/")]
    assert github.gitops_log()[0] == "meshforge: pr-7 (closed)"
    [comment] = github.github_state()["comments"]
    assert "Removed with the pull request" in comment["body"]


HOOK = """#!/bin/sh
# pre-push, once: another pull request's run pushes the GitOps branch first
[ -f "$STUBS/raced" ] && exit 0
touch "$STUBS/raced"
other="$STUBS/other"
git clone --quiet --branch gitops "$ORIGIN" "$other"
cd "$other"
meshforge sandbox create pr-9 --fork cartservice=ghcr.io/acme/cartservice:other --label pr=pr-9 -o sandboxes/pr-9.yaml
git add -A && git -c user.name=other -c user.email=o@example.com commit --quiet -m "meshforge: pr-9 (opened)"
git push --quiet origin HEAD:refs/heads/gitops
"""


def test_a_lost_push_race_is_retried_from_the_new_head(github):
    hooks = github.root / "hooks"
    hooks.mkdir()
    (hooks / "pre-push").write_text(HOOK)
    (hooks / "pre-push").chmod(0o755)
    env = {"ORIGIN": str(github.origin), "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.hooksPath",
           "GIT_CONFIG_VALUE_0": str(hooks)}
    result, _ = github.run(github.pull_request("opened"), env)
    ok(result)
    log = result.step("update the GitOps branch").log
    assert "another run pushed to gitops first (attempt 1 of 5)" in log
    assert github.gitops_log()[:2] == ["meshforge: pr-7 (opened)", "meshforge: pr-9 (opened)"]
    repo = github.gitops()
    assert (repo / "sandboxes/pr-7.yaml").exists() and (repo / "sandboxes/pr-9.yaml").exists()
    files = rendered(repo)  # rendered again from the new head: both sandboxes' forks
    assert f"kubernetes/default/deployment-{fork_name('cartservice', 'pr-9')}.yaml" in files
    assert f"kubernetes/default/deployment-{fork_name('cartservice', NAME)}.yaml" in files


def test_a_push_refused_for_another_reason_fails_the_job_loudly(github):
    event = github.pull_request("opened")
    hook = github.origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'permission denied' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = github.gitops_log()
    result, _ = github.run(event)
    assert not result.ok
    step = result.step("update the GitOps branch")
    assert not step.ok and "::error::cannot push to gitops" in step.log and "attempt 2" not in step.log
    assert "meshforge-dev/meshforge/comment@main" not in result.ran()  # no comment about a sandbox that is not there
    assert github.gitops_log() == before


def test_the_scheduled_run_prunes_a_sandbox_after_it_expired(github):
    long_ago = datetime.now(timezone.utc) - timedelta(hours=5)
    work = github.gitops()
    mf = [sys.executable, "-m", "meshforge.cli"]
    subprocess.run(mf + ["sandbox", "create", "pr-3", "--fork", "cartservice=ghcr.io/acme/cartservice:old", "--ttl",
                         "1h", "--now", long_ago.isoformat(), "-o", str(work / "sandboxes/pr-3.yaml")], check=True)
    for fmt in ("kubernetes", "istio"):  # rendered while it was active
        subprocess.run(mf + ["render", "baseline", "sandboxes", "--format", fmt, "-o", f"rendered/{fmt}", "--now",
                             (long_ago + timedelta(minutes=1)).isoformat(), "--quiet"], cwd=work, check=True)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "pr-3", cwd=work)
    git("push", "--quiet", "origin", "gitops", cwd=work)
    assert f"kubernetes/default/deployment-{fork_name('cartservice', 'pr-3')}.yaml" in rendered(work)

    result, _ = github.run(github.schedule())
    ok(result)
    assert result.ran() == ["meshforge-dev/meshforge@main", "plan", "actions/checkout@v4", "update the GitOps branch"]
    assert github.gitops_log()[0] == "meshforge: all sandboxes (schedule)"
    files = rendered(github.gitops())
    assert not [f for f in files if "pr-3" in f]  # its fork and its routes are gone: the GitOps tool prunes them
    assert github.docker() == [] and github.github_state()["calls"] == []

    result, _ = github.run(github.schedule())  # nothing expired since: nothing to commit
    ok(result)
    assert "the GitOps branch is up to date" in result.step("update the GitOps branch").log
    assert github.gitops_log()[0] == "meshforge: all sandboxes (schedule)" and len(github.gitops_log()) == 3


def test_a_pull_request_from_a_fork_gets_no_sandbox_and_says_why(github):
    before = github.gitops_log()
    result, _ = github.run(github.pull_request("opened", fork=True))
    ok(result)
    assert "validate and render (pull request from a fork)" in result.ran()
    assert "update the GitOps branch" not in result.ran() and "build and push the image" not in result.ran()
    assert github.gitops_log() == before and github.docker() == [] and github.github_state()["calls"] == []
    assert "### No sandbox for this pull request" in result.summary and "read-only token" in result.summary


def test_the_workflow_declares_a_concurrency_group_per_pull_request():
    group = WORKFLOW["concurrency"]["group"]
    assert "pull_request.number" in group and WORKFLOW["concurrency"]["cancel-in-progress"] is False
    triggers = WORKFLOW[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"pull_request", "schedule", "workflow_dispatch"}
    assert triggers["pull_request"]["types"] == ["opened", "synchronize", "reopened", "closed"]


def test_the_action_installs_meshforge_once_per_version(github, tool_cache):
    result, runner = github.run(github.schedule())
    ok(result)
    installs = [p for p in tool_cache.glob("meshforge/*/.installed")]
    assert len(installs) == 1  # every run of this module used the one install
    meshforge = installs[0].parent / "bin" / "meshforge"
    assert meshforge.exists() and os.stat(meshforge).st_mode & stat.S_IXUSR
    assert str(meshforge.parent) in runner.path


def test_the_pr_gate_compares_the_ready_sandbox_comments_and_fails_on_breaking(github):
    """With MESHFORGE_COMPARE_VIA set, an opened pull request waits for its fork, runs `meshforge compare` (for
    real, against two versions of a service behind a real Envoy sidecar whose sandbox is this pull request's),
    posts the report as a comment of its own and fails the job on breaking differences; unset, no such step
    runs (the other stories)."""
    from .compare_harness import sidecar

    git("checkout", "--quiet", "main", cwd=github.seed)
    (github.seed / "compare").mkdir()
    (github.seed / "compare" / "cases.yaml").write_text("- {name: user, path: /user}\n- {name: same, path: /same}\n")
    git("add", "-A", cwd=github.seed)
    git("commit", "--quiet", "-m", "compare cases", cwd=github.seed)
    git("push", "--quiet", "origin", "main", cwd=github.seed)
    with sidecar(NAME) as port:
        result, _ = github.run(github.pull_request("opened"),
                               variables={"MESHFORGE_COMPARE_VIA": f"http://127.0.0.1:{port}",
                                          "MESHFORGE_COMPARE_HOST": "api"})
    steps = {s.name: s for s in result.steps}
    assert steps["compare the sandbox with the baseline"].ran and steps["compare the sandbox with the baseline"].ok, \
        steps["compare the sandbox with the baseline"].log
    assert not result.ok and steps["fail on breaking differences"].ran  # /user renamed a field
    waited = [json.loads(line) for line in (github.stubs / "kubectl.log").read_text().splitlines()]
    assert waited == [["wait", "--for=condition=Available", "deployment", "-l", f"meshforge.dev/sandbox={NAME}",
                       "-n", "default", "--timeout=15m"]]
    comments = github.github_state()["comments"]
    report = next(c["body"] for c in comments if "<!-- meshforge-compare -->" in c["body"])
    assert f"### meshforge compare: `{NAME}` against the baseline" in report and "`$.user.name`" in report
    assert any("<!-- meshforge-sandbox -->" in c["body"] for c in comments)  # the sandbox's own comment too
