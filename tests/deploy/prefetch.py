"""What the compose test needs, built ahead of it: the tools, the base image, the wheels and the
suite's image, in a process of its own started when the test is collected beside others.

Made cold, these take minutes (a fresh CI machine: about two for the base image and the wheels,
two more for the image), all of it waiting that other tests can overlap. The process runs the very
steps the test runs (`docker.prepare_images`) at a lower priority, so the test later finds them in
Docker's cache; it holds the cache's lock while it works, and the test waits for it first
(`wait`), raising its priority again. Run alone: `python -m tests.deploy.prefetch`."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.deploy import docker

NICE = 10
_proc: subprocess.Popen[bytes] | None = None


def start(log: Path) -> None:
    """Start the prefetch in the background (once per process); its output goes to `log`."""
    global _proc
    if _proc is not None:
        return
    with log.open("wb") as out:
        _proc = subprocess.Popen(["nice", "-n", str(NICE), sys.executable, "-m", "tests.deploy.prefetch"],
                                 cwd=docker.ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait(timeout: float = 1800) -> None:
    """Let a running prefetch finish, at the test's priority now that the test waits for it."""
    if _proc is None or _proc.poll() is not None:
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PGRP, _proc.pid, 0)
    _proc.wait(timeout)


def stop() -> None:
    """End a prefetch still running (the session is over): it stops its dockerd on the way out."""
    if _proc is None or _proc.poll() is not None:
        return
    _proc.terminate()
    try:
        _proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(_proc.pid, signal.SIGKILL)
        _proc.wait(10)


def main() -> None:
    # SIGTERM unwinds like an exception, so the daemon's context stops dockerd by its PID.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reason = docker.why_not()
    if reason:
        print(f"nothing to prefetch: {reason}", flush=True)
        return
    t0 = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="cbp-", dir="/tmp"))  # short: dockerd's socket path has a limit
    try:
        with docker.daemon(scratch / "d") as d:
            docker.prepare_images(d, sys.executable)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"prefetched in {time.monotonic() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
