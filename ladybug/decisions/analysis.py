"""The canary analysis: a rule over the canaries' traffic at the endpoint."""

from __future__ import annotations

from dataclasses import dataclass

from ladybug.decisions.model import Verdict


@dataclass(frozen=True)
class Traffic:
    """Counters of some instances at the endpoint (cumulative) and their average response time."""

    requests: int = 0
    errors: int = 0  # 5xx answers
    avg_ms: float = 0.0


@dataclass(frozen=True)
class Rule:
    metric: str = ""  # error_rate | latency_ms; "" = no analysis
    threshold: float = 0.0
    window_s: float = 30.0
    min_requests: int = 20


def judge(rule: Rule, before: Traffic, now: Traffic, elapsed: float) -> tuple[Verdict, str]:
    """The verdict on the canaries after `elapsed` seconds of the window, and why."""
    if not rule.metric:
        return Verdict.NONE, "no analysis rule"
    requests = now.requests - before.requests
    errors = now.errors - before.errors
    # A failing canary is stopped as soon as enough traffic proves it, not only at the window's end.
    rate = errors / requests if requests > 0 else 0.0
    value = rate if rule.metric == "error_rate" else now.avg_ms
    if requests >= rule.min_requests and value > rule.threshold:
        return Verdict.FAIL, (f"{rule.metric} {value:.3g} over {requests} requests is above "
                              f"{rule.threshold:g}")
    if elapsed < rule.window_s:
        return Verdict.WAIT, f"analysing canaries ({elapsed:.0f}/{rule.window_s:.0f} s, {requests} requests)"
    if requests < rule.min_requests:
        return Verdict.INCONCLUSIVE, (f"only {requests} requests in {rule.window_s:.0f} s "
                                      f"(fewer than {rule.min_requests}): the analysis decides nothing")
    return Verdict.PASS, f"{rule.metric} {value:.3g} within {rule.threshold:g} over {requests} requests"
