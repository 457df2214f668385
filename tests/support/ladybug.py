"""The application the ladybug tests deploy."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from cbapi.ladybug.v1 import ladybug_pb2 as pb

APP = """import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(os.environ["CB_REVISION"].encode())
http.server.ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"""


def web(name: str, mcis: str, revision_text: str = "v1") -> pb.Application:
    return pb.Application(name=name, mcis=mcis, spec=pb.AppSpec(
        artifact=pb.Artifact(command="python3 app.py", files={"app.py": APP.encode()}),
        env={"TEXT": revision_text}, ports=[pb.Port(name="http", port=8080)], instances=4,
        update=pb.UpdateStrategy(type=pb.ROLLING, max_parallel=1)))


def stop_stray_haproxies(ep_dir: Path) -> None:
    """Endpoints outlive ladybug by design: the test stops what it left (by PID file)."""
    for pid_file in ep_dir.glob("*/haproxy.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
