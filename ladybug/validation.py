"""What makes an application spec acceptable, checked before anything is recorded."""

from __future__ import annotations

import re

from cbapi.ladybug.v1 import ladybug_pb2 as pb
from services import errors, limits
from services.errors import FieldViolation
from services.names import check_name

FILES_MAX_BYTES = 1 * limits.MIB
# The app record holds the spec: files and all must fit in one record with room for the status.
SPEC_MAX_BYTES = limits.RECORD_MAX_BYTES - 16 * limits.KIB
ANALYSIS_METRICS = ("error_rate", "latency_ms")
# The agent sets these for every instance (its VM's IP and port, which app and instance it is).
AGENT_ENV = ("PORT", "HOST", "CB_APP", "CB_REVISION", "CB_INSTANCE")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _violations(spec: pb.AppSpec, where: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []

    def bad(field: str, why: str) -> None:
        out.append(FieldViolation(f"{where}.{field}", why))

    if not spec.artifact.command.strip():
        bad("artifact.command", "is required: the command line that starts one instance")
    total = 0
    for path, content in spec.artifact.files.items():
        total += len(content)
        if not path or path.startswith("/") or ".." in path.split("/") or "\0" in path:
            bad(f"artifact.files[{path!r}]", "must be a relative path inside the instance's directory")
    if total > FILES_MAX_BYTES:
        bad("artifact.files", f"{limits.human(total)} in all; at most {limits.human(FILES_MAX_BYTES)}")
    elif spec.ByteSize() > SPEC_MAX_BYTES:
        bad("artifact.files", f"the spec is {limits.human(spec.ByteSize())}; with its files it must stay "
                              f"under {limits.human(SPEC_MAX_BYTES)}")
    for key in spec.env:
        if not _ENV_NAME.match(key):
            bad("env", f"{key[:80]!r} must be a variable name (letters, digits, '_'; not first a digit)")
        elif key in AGENT_ENV:
            bad("env", f"{key} is set by the agent for every instance ({', '.join(AGENT_ENV)})")
    for i, port in enumerate(spec.ports):
        if not 1 <= port.port <= 65535:
            bad(f"ports[{i}].port", f"{port.port} is not a port (1-65535)")
    if spec.instances < 0:
        bad("instances", "must be 0 (one per VM) or more")
    if spec.max_per_vm < 0:
        bad("max_per_vm", "must be 0 (default 1) or more")
    for i, sg in enumerate(spec.subgroups):
        if not sg:
            bad(f"subgroups[{i}]", "is empty")
    hc = spec.health_check
    if hc.WhichOneof("probe") in ("http_path", "tcp") and not spec.ports and not hc.port:
        bad("health_check", "an HTTP or TCP probe needs a port: give ports or health_check.port")
    if hc.WhichOneof("probe") == "http_path" and not hc.http_path.startswith("/"):
        bad("health_check.http_path", "must start with '/'")
    for name in ("interval_s", "timeout_s"):
        if getattr(hc, name) < 0:
            bad(f"health_check.{name}", "must not be negative")
    up = spec.update
    if up.max_parallel < 0:
        bad("update.max_parallel", "must be 0 (default 1) or more")
    for name in ("min_healthy_time_s", "healthy_deadline_s", "progress_deadline_s"):
        if getattr(up, name) < 0:
            bad(f"update.{name}", "must not be negative")
    if up.type == pb.CANARY and up.canaries < 1:
        bad("update.canaries", "a canary rollout needs at least 1 canary")
    if up.canaries < 0:
        bad("update.canaries", "must not be negative")
    if up.HasField("analysis") and up.analysis.metric:
        if up.analysis.metric not in ANALYSIS_METRICS:
            bad("update.analysis.metric", f"{up.analysis.metric!r}: use one of {', '.join(ANALYSIS_METRICS)}")
        if up.analysis.window_s < 0 or up.analysis.min_requests < 0:
            bad("update.analysis", "window_s and min_requests must not be negative")
    sc = spec.scaling
    if spec.HasField("scaling"):
        if sc.min_instances < 0 or sc.max_instances < sc.min_instances:
            bad("scaling", "needs 0 <= min_instances <= max_instances")
        if sc.group and not sc.field:
            bad("scaling.field", "is required with scaling.group (e.g. cpu / utilization_percent)")
        if sc.group and sc.scale_in_below >= sc.scale_out_above:
            bad("scaling", "scale_in_below must be below scale_out_above")
        if sc.grow_subgroup:
            try:
                check_name(sc.grow_subgroup, f"{where}.scaling.grow_subgroup")
            except errors.InvalidArgument as err:
                out.extend(err.violations)
    return out


def check_application(app: pb.Application, where: str = "application") -> None:
    """INVALID_ARGUMENT naming every offending field, or nothing."""
    out: list[FieldViolation] = []
    for field, value in (("name", app.name), ("mcis", app.mcis)):
        try:
            check_name(value, f"{where}.{field}")
        except errors.InvalidArgument as err:
            out.extend(err.violations)
    out += _violations(app.spec, f"{where}.spec")
    if out:
        raise errors.InvalidArgument(f"{out[0].field}: {out[0].description}"
                                     + (f" (and {len(out) - 1} more)" if len(out) > 1 else ""), out)


def check_spec(spec: pb.AppSpec, where: str = "application.spec") -> None:
    out = _violations(spec, where)
    if out:
        raise errors.InvalidArgument(f"{out[0].field}: {out[0].description}", out)
