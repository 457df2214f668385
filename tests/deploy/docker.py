"""A Docker daemon of a test's own, as containers.md says works on these machines: Debian's
docker.io with no bridge and no firewall rules, everything under one scratch directory, stopped
by its PID; a base image made with mmdebstrap (cached between runs) tagged as the Dockerfile's
FROM; the suite's image built from the checkout with its wheels served on loopback."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.server
import json
import os
import shutil
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# Base image tarball, wheels and the daemon's images, kept between runs (they take minutes to
# make and do not change for the same pyproject.toml).
CACHE = Path(os.environ.get("DEPLOY_TEST_CACHE", "/var/tmp/cb-deploy-cache"))
BASE_TAG = "python:3.11-slim"  # the Dockerfile's FROM
IMAGE = "cb-suite:test"  # the suite's image, built from this checkout
PACKAGES = ("docker.io", "docker-compose", "mmdebstrap")


def missing_tools() -> list[str]:
    return [tool for tool in ("dockerd", "docker-compose", "mmdebstrap") if shutil.which(tool) is None]


def why_not() -> str:
    """Why this machine cannot run the test ("" when it can, after installing what it lacks)."""
    if os.geteuid() != 0:
        return "needs root (its own dockerd and mmdebstrap)"
    if not missing_tools():
        return ""
    if shutil.which("apt-get") is None:
        return f"needs {', '.join(missing_tools())} and has no apt-get to install them"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], env=env,
                   capture_output=True, timeout=600, check=False)
    left = missing_tools()
    return f"could not install {', '.join(left)} with apt-get" if left else ""


def docker_cli() -> str:
    # Debian's client matches Debian's daemon (20.10); a newer client elsewhere on PATH may not.
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


@dataclass
class Daemon:
    scratch: Path
    proc: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.scratch}/docker.sock"}

    def run(self, *args: str, timeout: float = 600, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([docker_cli(), *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False, **kw)  # type: ignore[call-overload]
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {done.stdout}{done.stderr}")
        return done  # type: ignore[no-any-return]

    def compose(self, *args: str, env: dict[str, str], timeout: float = 600,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["docker-compose", *args], env={**self.env, **env}, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"docker-compose {' '.join(args)}: {done.stdout}{done.stderr}")
        return done


@contextlib.contextmanager
def daemon(scratch: Path) -> Iterator[Daemon]:
    """dockerd with no bridge and no iptables, its sockets under `scratch`, stopped by its PID.

    Its images live in the cache (CACHE/docker-data), so the base image and the layer of the
    suite's dependencies are built once per pyproject.toml; one test run at a time holds it."""
    scratch.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    lock = (CACHE / "lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    config = scratch / "daemon.json"
    config.write_text(json.dumps({
        "bridge": "none", "iptables": False, "ip6tables": False, "ip-forward": False, "ip-masq": False,
        "data-root": str(CACHE / "docker-data"), "exec-root": str(scratch / "exec"),
        "pidfile": str(scratch / "docker.pid"), "hosts": [f"unix://{scratch}/docker.sock"]}))
    log = (scratch / "dockerd.log").open("wb")
    proc = subprocess.Popen(["dockerd", "--config-file", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()
    d = Daemon(scratch, proc)
    try:
        deadline = time.monotonic() + 30
        while d.run("info", check=False, timeout=10).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: {(scratch / 'dockerd.log').read_text()[-2000:]}")
            time.sleep(0.2)
        # What an interrupted earlier run left in the cached data root (it would restart now).
        stale = d.run("ps", "-aq").stdout.split()
        if stale:
            d.run("rm", "-f", *stale)
        d.run("volume", "prune", "-f")
        yield d
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        netns = scratch / "exec" / "netns" / "default"
        if netns.exists():
            subprocess.run(["umount", str(netns)], capture_output=True, check=False)
        shutil.rmtree(scratch, ignore_errors=True)
        lock.close()


def base_image(d: Daemon) -> None:
    """A Debian bookworm with Python 3.11 (mmdebstrap, cached as a tarball), tagged as the FROM."""
    if d.run("image", "inspect", BASE_TAG, check=False).returncode == 0:
        return
    tarball = CACHE / "bookworm-python.tar"
    if not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = CACHE / "bookworm-python.tar.partial"
        subprocess.run(["mmdebstrap", "--mode=root", "--variant=minbase", "--format=tar",
                        "--include=python3,python3-venv,python3-pip,ca-certificates,python-is-python3",
                        "--customize-hook=rm -f \"$1\"/usr/lib/python3.11/EXTERNALLY-MANAGED",
                        "bookworm", str(partial)], capture_output=True, timeout=1200, check=True)
        partial.rename(tarball)
    d.run("import", str(tarball), "cb-test-base:bookworm")
    d.run("tag", "cb-test-base:bookworm", BASE_TAG)


def prepare_images(d: Daemon, python: str) -> float:
    """The base image and the suite's image built from this checkout (IMAGE); the seconds the
    suite's image took."""
    base_image(d)
    t0 = time.monotonic()
    with served(wheelhouse(python)) as wheels:
        d.run("build", "-q", "--network", "host", "-f", str(ROOT / "deploy" / "Dockerfile"),
              "--build-arg", f"PIP_FIND_LINKS={wheels}", "--build-arg", "PIP_NO_INDEX=1", "-t", IMAGE, str(ROOT),
              timeout=1800)
    return time.monotonic() - t0


def wheelhouse(python: str) -> Path:
    """Wheels of every dependency of the suite (made with this machine's pip; cached per pyproject)."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    out = CACHE / f"wheels-{digest}"
    if not out.exists():
        partial = CACHE / f"wheels-{digest}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run([python, "-m", "pip", "wheel", "-q", "-w", str(partial), str(ROOT), "setuptools", "wheel"],
                       capture_output=True, timeout=1200, check=True)
        for own in partial.glob("cb_suite-*.whl"):
            own.unlink()
        partial.rename(out)
    return out


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # the same port again at once, past the last run's TIME_WAIT


def _bind(handler: type[http.server.SimpleHTTPRequestHandler], directory: Path) -> _Server:
    """On the same port every run for the same directory if it is free, else any free port. The URL
    is a build argument, and Docker's build cache keys on build arguments: a new port each run made
    it rebuild the dependencies' layer (about 45 s) and copy the venv again (about 20 s) every time."""
    stable = 20000 + int(hashlib.sha256(str(directory).encode()).hexdigest(), 16) % 10000
    try:
        return _Server(("127.0.0.1", stable), handler)
    except OSError:
        return _Server(("127.0.0.1", 0), handler)


@contextlib.contextmanager
def served(directory: Path) -> Iterator[str]:
    """`directory` over HTTP on loopback (pip's --find-links), for as long as needed."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args, directory=str(directory))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with _bind(Quiet, directory) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
