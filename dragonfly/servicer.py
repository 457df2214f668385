"""The gRPC API of dragonfly (`cbapi.dragonfly.v1.Dragonfly`)."""

from __future__ import annotations

import json
import re
import time

import grpc

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from cbapi.dragonfly.v1 import dragonfly_pb2_grpc as pb_grpc
from cbapi.dragonfly.v1 import workloads_pb2 as wpb
from dragonfly.agent_requests import AgentRequests
from dragonfly.agents import Agents, stamp
from dragonfly.alerts.engine import AlertEngine
from dragonfly.alerts.rulebook import RuleBook
from dragonfly.credentials import AgentCredentials
from dragonfly.protocol import benchmarks
from dragonfly.protocol.config import render
from dragonfly.protocol.metrics import GROUPS
from dragonfly.protocol.replies import BUSY, NOT_FOUND, Refusal
from dragonfly.protocol.subjects import VmId
from dragonfly.protocol.workspec import NAME
from dragonfly.storage import AGGREGATES, PERIODS, Backend, Query, Result
from dragonfly.workloads import WorkloadStatuses, set_body, to_status
from services import errors
from services.names import check_name
from services.natsauth import decode_claims, format_creds
from services.paging import page_size

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Extra time a command request waits beyond the command's own timeout (the trip and the kill).
COMMAND_SLACK_S = 5.0
# Extra time a benchmark request waits beyond its budget: starting worker processes, each
# benchmark's grace before the agent cuts it off, the last disk flush.
BENCH_SLACK_S = 10.0
MAX_INSTANCE = 128
# How long a set request may take beyond the longest stop grace (stops, then starts, on the agent).
WORKLOADS_SLACK_S = 15.0
DEFAULT_STOP_GRACE_S = 5.0
DEFAULT_TAIL_LINES = 100
MAX_TAIL_LINES = 10_000


def vm_id(ns: str, mcis: str, vm: str) -> VmId:
    try:
        return VmId(ns, mcis, vm)
    except ValueError as err:
        field = str(err).split(" ", 1)[0]
        raise errors.InvalidArgument.field(field, str(err)) from err


def duration_s(text: str) -> float:
    m = _DURATION.match(text or "10m")
    if not m:
        raise errors.InvalidArgument.field("duration", f"{text!r} is not like 30s, 10m, 6h or 2d")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def build_query(prefix: str, group: str, period: str, aggregate: str, duration: str) -> Query:
    if group not in GROUPS:
        raise errors.InvalidArgument.field("group", f"{group!r} is not one of {', '.join(GROUPS)}")
    if period and period not in PERIODS:
        raise errors.InvalidArgument.field("period", "m, h or d (or empty for every stored point)")
    aggregate = aggregate or "avg"
    if aggregate not in AGGREGATES:
        raise errors.InvalidArgument.field("aggregate", f"one of {', '.join(AGGREGATES)}")
    now = time.time()
    return Query(prefix, group, now - duration_s(duration), now, PERIODS.get(period, 0.0), aggregate)


def bench_request(request: pb.RunBenchmarkRequest) -> benchmarks.BenchRequest:
    """The checked request for the agent; INVALID_ARGUMENT names the wrong field."""
    try:
        return benchmarks.build_request(list(request.benchmarks), list(request.rtt_targets), request.budget_s)
    except benchmarks.FieldError as err:
        raise errors.InvalidArgument.field(err.field, err.description) from err


def to_result(vm: VmId, report: benchmarks.BenchReport) -> pb.BenchmarkResult:
    out = pb.BenchmarkResult(ns=vm.ns, mcis=vm.mcis, vm=vm.vm, kind=report.kind, cpu_count=report.cpu_count,
                             errors=report.errors, duration_s=report.duration_s, time=stamp(report.time),
                             rtt=[pb.RttResult(target=r.target, rtt_ms=r.rtt_ms, samples=r.samples, error=r.error)
                                  for r in report.rtt])
    for field in benchmarks.FIELDS.values():
        setattr(out, field, float(getattr(report, field)))
    return out


def to_series(results: list[Result]) -> pb.QueryMetricsResponse:
    out = pb.QueryMetricsResponse()
    for r in results:
        # Series are kept under `ns.mcis.vm`; a client names a VM by its name, as everywhere else.
        series = out.series.add(vm=r.vm.rsplit(".", 1)[-1], group=r.group)
        for t, values in r.points:
            series.points.add(time=stamp(t), values=values)
    return out


class DragonflyServicer(pb_grpc.DragonflyServicer):
    """Agents, metrics and commands of every VM that has an agent."""

    def __init__(self, agents: Agents, backend: Backend, requests: AgentRequests,
                 credentials: AgentCredentials | None, agent_nats_url: str, alerts: AlertEngine | None = None,
                 rules: RuleBook | None = None, workloads: WorkloadStatuses | None = None) -> None:
        self.agents = agents
        self.workloads = workloads
        self.alerts = alerts
        self.rules = rules
        self.backend = backend
        self.requests = requests
        self.credentials = credentials
        self.agent_nats_url = agent_nats_url

    def _credentials(self) -> AgentCredentials:
        if self.credentials is None:
            raise errors.FailedPrecondition("dragonfly has no agent signing key (CB_DRAGONFLY_AGENT_SIGNER_FILE)")
        return self.credentials

    async def IssueAgentCredential(self, request: pb.IssueAgentCredentialRequest,
                                   context: grpc.aio.ServicerContext) -> pb.AgentCredential:
        """Mint a credential that lets one VM's agent speak only as that VM; the VM name's
        earlier credentials are revoked."""
        vm = vm_id(request.ns, request.mcis, request.vm)
        _check_instance(request.instance)
        creds = await self._credentials().issue(vm, request.instance)
        text = format_creds(creds.jwt, creds.seed)
        interval = await self.agents.interval(vm.ns, vm.mcis)
        return pb.AgentCredential(creds=text, user_data=render(vm, self.agent_nats_url, text, interval),
                                  user=str(decode_claims(creds.jwt)["sub"]))

    async def RevokeAgentCredential(self, request: pb.RevokeAgentCredentialRequest,
                                    context: grpc.aio.ServicerContext) -> pb.RevokeAgentCredentialResponse:
        """Revoke one VM's agent credentials (only those of `instance`, when given): answered once
        the NATS server refuses them and has closed their connections. Idempotent."""
        vm = vm_id(request.ns, request.mcis, request.vm)
        _check_instance(request.instance)
        users = await self._credentials().revoke(vm, request.instance)
        # What dragonfly kept of the VM goes with it, and of its MCIS and namespace once nothing of
        # them is monitored any more (tumblebug retries a revoke until it is answered, so this is too).
        vm_gone, mcis_gone, ns_gone = await self.agents.forget(vm)
        if self.alerts is not None and vm_gone:
            await self.alerts.forget(vm.ns, "" if ns_gone else vm.mcis, "" if mcis_gone else vm.vm, gone_vm=vm.key)
        return pb.RevokeAgentCredentialResponse(users=users)

    async def ListAgents(self, request: pb.ListAgentsRequest, context: grpc.aio.ServicerContext) -> pb.ListAgentsResponse:
        """Registered agents of a namespace or MCIS, with health from their heartbeats."""
        check_name(request.ns, "ns")
        if request.mcis:
            check_name(request.mcis, "mcis")
        agents, next_key = await self.agents.page(request.ns, request.mcis, page_size(request.page_size),
                                                  request.page_token)
        return pb.ListAgentsResponse(agents=agents, next_page_token=next_key)

    async def GetAgent(self, request: pb.GetAgentRequest, context: grpc.aio.ServicerContext) -> pb.Agent:
        """One agent; NOT_FOUND until it has registered."""
        return await self.agents.get(vm_id(request.ns, request.mcis, request.vm))

    async def QueryVmMetrics(self, request: pb.QueryVmMetricsRequest,
                             context: grpc.aio.ServicerContext) -> pb.QueryMetricsResponse:
        """Stored metrics of one VM."""
        vm = vm_id(request.ns, request.mcis, request.vm)
        q = build_query(vm.key, request.group, request.period, request.aggregate, request.duration)
        return to_series(await self.backend.query(q))

    async def QueryMcisMetrics(self, request: pb.QueryMcisMetricsRequest,
                               context: grpc.aio.ServicerContext) -> pb.QueryMetricsResponse:
        """Stored metrics of every VM of an MCIS, one series each."""
        vm = vm_id(request.ns, request.mcis, "a")
        q = build_query(f"{vm.ns}.{vm.mcis}.", request.group, request.period, request.aggregate, request.duration)
        return to_series(await self.backend.query(q))

    async def ReadVmMetrics(self, request: pb.ReadVmMetricsRequest, context: grpc.aio.ServicerContext) -> pb.LiveMetrics:
        """Metrics read from the agent now."""
        vm = vm_id(request.ns, request.mcis, request.vm)
        live = await self.requests.metrics(vm)
        if isinstance(live, Refusal):
            raise errors.InvalidArgument(f"the agent refused to read metrics: {live.error}")
        out = pb.LiveMetrics(time=stamp(live.time))
        for group, values in live.groups.items():
            out.groups[group].values.update(values)
        return out

    async def RunCommand(self, request: pb.RunCommandRequest, context: grpc.aio.ServicerContext) -> pb.CommandResult:
        """Run a command through the VM's agent; a timeout is reported in the result, not as an error."""
        vm = vm_id(request.ns, request.mcis, request.vm)
        if not request.command.strip():
            raise errors.InvalidArgument.field("command", "required")
        if request.timeout_s < 0 or request.output_limit_bytes < 0:
            raise errors.InvalidArgument.field("timeout_s" if request.timeout_s < 0 else "output_limit_bytes",
                                               "must be >= 0")
        result = await self.requests.command(vm, request.command, request.timeout_s or 60.0,
                                             request.output_limit_bytes, COMMAND_SLACK_S)
        if isinstance(result, Refusal):
            raise errors.InvalidArgument(f"the agent refused the command: {result.error}")
        return pb.CommandResult(exit_code=result.exit_code, stdout=result.stdout, stderr=result.stderr,
                                timed_out=result.timed_out, stdout_truncated=result.stdout_truncated,
                                stderr_truncated=result.stderr_truncated, duration_s=result.duration_s,
                                error=result.error)

    async def RunBenchmark(self, request: pb.RunBenchmarkRequest,
                           context: grpc.aio.ServicerContext) -> pb.BenchmarkResult:
        """Run benchmarks through the VM's agent, one at a time within the budget; a benchmark
        that fails is named in `errors` and the others still report."""
        vm = vm_id(request.ns, request.mcis, request.vm)
        bench = bench_request(request)
        report = await self.requests.benchmark(vm, bench, BENCH_SLACK_S)
        if isinstance(report, Refusal):
            if report.reason == BUSY:
                raise errors.Aborted(f"a benchmark is already running on VM {vm.key}; retry when it ends")
            raise errors.InvalidArgument(f"the agent refused the benchmark: {report.error}")
        return to_result(vm, report)

    # -- workloads ----------------------------------------------------------------

    def _statuses(self) -> WorkloadStatuses:
        if self.workloads is None:
            raise errors.FailedPrecondition("this dragonfly runs without workloads")
        return self.workloads

    async def SetWorkloads(self, request: wpb.SetWorkloadsRequest,
                           context: grpc.aio.ServicerContext) -> wpb.SetWorkloadsResponse:
        """Replace one app's workloads on a VM (its whole set; an empty set stops them all); the
        agent stops what left or changed, starts what is new, and answers with their statuses.
        NOT_FOUND for a VM without an agent, FAILED_PRECONDITION while its agent is away."""
        vm = vm_id(request.ns, request.mcis, request.vm)
        statuses = self._statuses()
        body = set_body(request)
        data = json.dumps(body).encode()
        limit = self.requests.max_payload
        if len(data) > limit:
            raise errors.InvalidArgument.field("workloads", f"the set is {len(data)} bytes on the wire, over the "
                                               f"bus's limit of {limit}: send smaller files or fewer workloads")
        grace = max([w.stop_grace_s for w in request.workloads] + [DEFAULT_STOP_GRACE_S])
        answer = await self.requests.set_workloads(vm, data, grace + WORKLOADS_SLACK_S)
        if isinstance(answer, Refusal):
            raise errors.InvalidArgument(f"the agent of VM {vm.key} refused the workloads: {answer.error}")
        try:
            out = [to_status(s) for s in answer.statuses]
            at = answer.time or time.time()
        except (ValueError, KeyError, TypeError) as err:
            raise errors.Unavailable(f"the agent of VM {vm.key} answered with malformed statuses: {err}") from err
        await statuses.record(vm, out, at, app=request.app)
        return wpb.SetWorkloadsResponse(statuses=out)

    async def ListWorkloads(self, request: wpb.ListWorkloadsRequest,
                            context: grpc.aio.ServicerContext) -> wpb.ListWorkloadsResponse:
        """The statuses the agents of an MCIS (or one VM) last reported, optionally of one app."""
        check_name(request.ns, "ns")
        check_name(request.mcis, "mcis")
        if request.vm:
            vm_id(request.ns, request.mcis, request.vm)
        if request.app:
            _check_app(request.app)
        vms = await self._statuses().list(request.ns, request.mcis, request.vm, request.app)
        return wpb.ListWorkloadsResponse(vms=vms)

    async def ReadWorkloadLogs(self, request: wpb.ReadWorkloadLogsRequest,
                               context: grpc.aio.ServicerContext) -> wpb.WorkloadLogs:
        """The last lines of a workload's stdout and stderr, read from its agent."""
        vm = vm_id(request.ns, request.mcis, request.vm)
        if not request.id:
            raise errors.InvalidArgument.field("id", "required")
        if request.tail_lines < 0:
            raise errors.InvalidArgument.field("tail_lines", "must be >= 0")
        tail = min(request.tail_lines or DEFAULT_TAIL_LINES, MAX_TAIL_LINES)
        answer = await self.requests.logs(vm, request.id, tail)
        if isinstance(answer, Refusal):
            if answer.reason == NOT_FOUND:
                raise errors.NotFound(f"VM {vm.key} runs no workload {request.id!r}")
            raise errors.InvalidArgument(f"the agent refused the logs request: {answer.error}")
        return wpb.WorkloadLogs(stdout=answer.stdout, stderr=answer.stderr)

    async def GetMonitoringConfig(self, request: pb.GetMonitoringConfigRequest,
                                  context: grpc.aio.ServicerContext) -> pb.MonitoringConfig:
        """The MCIS's settings (defaults until someone changes them)."""
        vm = vm_id(request.ns, request.mcis, "a")
        return pb.MonitoringConfig(interval_s=await self.agents.interval(vm.ns, vm.mcis))

    async def UpdateMonitoringConfig(self, request: pb.UpdateMonitoringConfigRequest,
                                     context: grpc.aio.ServicerContext) -> pb.MonitoringConfig:
        """Set the MCIS's interval; its agents change at once."""
        vm = vm_id(request.ns, request.mcis, "a")
        interval = request.config.interval_s
        if not 0.1 <= interval <= 3600:
            raise errors.InvalidArgument.field("config.interval_s", "between 0.1 and 3600 seconds")
        return await self.agents.set_interval(vm.ns, vm.mcis, interval)

    # -- alerts ---------------------------------------------------------------

    def _rules(self) -> RuleBook:
        if self.rules is None:
            raise errors.FailedPrecondition("this dragonfly runs without alerts")
        return self.rules

    async def CreateAlertRule(self, request: pb.CreateAlertRuleRequest,
                              context: grpc.aio.ServicerContext) -> pb.AlertRule:
        """Store a new rule; every replica starts judging it as soon as it hears of it."""
        return await self._rules().create(request.ns, request.rule)

    async def GetAlertRule(self, request: pb.GetAlertRuleRequest, context: grpc.aio.ServicerContext) -> pb.AlertRule:
        """One rule; NOT_FOUND if there is none by that name."""
        return await self._rules().get(request.ns, request.name)

    async def ListAlertRules(self, request: pb.ListAlertRulesRequest,
                             context: grpc.aio.ServicerContext) -> pb.ListAlertRulesResponse:
        """The rules of a namespace, by name."""
        page = await self._rules().page(request.ns, page_size(request.page_size), request.page_token)
        return pb.ListAlertRulesResponse(rules=[v.value for v in page.items], next_page_token=page.next_key)

    async def UpdateAlertRule(self, request: pb.UpdateAlertRuleRequest,
                              context: grpc.aio.ServicerContext) -> pb.AlertRule:
        """Replace a rule; what it had firing resolves, and its windows start afresh."""
        return await self._rules().replace(request.ns, request.name, request.rule)

    async def DeleteAlertRule(self, request: pb.DeleteAlertRuleRequest,
                              context: grpc.aio.ServicerContext) -> pb.DeleteAlertRuleResponse:
        """Delete a rule; what it had firing resolves."""
        await self._rules().delete(request.ns, request.name)
        return pb.DeleteAlertRuleResponse()

    async def ListAlertEvents(self, request: pb.ListAlertEventsRequest,
                              context: grpc.aio.ServicerContext) -> pb.ListAlertEventsResponse:
        """A namespace's alert events, oldest first (the newest CB_DRAGONFLY_ALERT_EVENTS_MAX are kept)."""
        page = await self._rules().events(request.ns, page_size(request.page_size), request.page_token)
        return pb.ListAlertEventsResponse(events=[v.value for v in page.items], next_page_token=page.next_key)


def _check_app(app: str) -> None:
    if not NAME.match(app):
        raise errors.InvalidArgument.field("app", f"{app[:80]!r} is not a valid name (lowercase letters, digits, '-')")


def _check_instance(instance: str) -> None:
    if len(instance) > MAX_INSTANCE:
        raise errors.InvalidArgument.field("instance", f"at most {MAX_INSTANCE} characters")
