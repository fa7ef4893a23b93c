"""The scale-out tier (examples/scale-out/) on loopback with real processes: one load balancer, two tail
samplers and Jaeger, each the real binary running the shipped config; four replicas of the seed agent
calling through the real OSS Portkey gateway with the bridge attached.

200 agent runs (12 spans each), 20 of them with a gateway retry (a 429, retried) or a fallback (the first
target answers 500) in one of their four model turns; OTELCOL_KEEP_PERCENT=0. Jaeger must hold exactly
the 20, each with every span its replica sent, and each sampler must say (its own metrics, its debug
exporter's log of what it kept) that every span of a kept trace went through it alone. Then the same with
one sampler killed with SIGKILL mid-run and restarted on its ports and storage: no kept trace is lost.
Last, the load balancer killed with SIGKILL while its persistent queue holds every span of 40 runs (both
samplers down): its restarted process delivers them all, and Jaeger holds the kept runs whole.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_portkey.testing import OssGateway, OtlpReceiver

from components import Jaeger
from scale_out import (
    Apps,
    Metrics,
    SentTrace,
    Tier,
    jaeger_span_ids,
    jaeger_trace_ids,
    kept_spans_logged,
    wait_until,
)

pytestmark = pytest.mark.integration

RUNS, REPLICAS, SPANS_PER_RUN = 200, 4, 12
# decision_wait must cover a run's spread from its first span to its last (examples/scale-out/README.md,
# "How to size it"): about 0.2 s here.
SAMPLER_ENV = {"OTELCOL_KEEP_PERCENT": "0", "OTELCOL_DECISION_WAIT": "5s"}


def kind(index: int) -> str:
    """Every tenth run has something worth keeping: a retry or a fallback, in turns."""
    if index % 10 != 5:
        return "plain"
    return "retry" if index % 20 == 5 else "fallback"


def plan(runs: int = RUNS) -> list[list[str]]:
    """The runs of each replica: ``runs / REPLICAS`` consecutive indexes each, a tenth of them remarkable."""
    per = runs // REPLICAS
    return [[kind(i) for i in range(r * per, (r + 1) * per)] for r in range(REPLICAS)]


@pytest.fixture
def tier(
    go_binaries: dict[str, str], jaeger: Jaeger, portkey_standin: OtlpReceiver, tmp_path: Path
) -> Iterator[Tier]:
    from conftest import PORTKEY_STANDIN_KEY

    tier = Tier(
        go_binaries["OTELCOL"],
        tmp_path,
        jaeger.otlp_grpc,
        f"{portkey_standin.endpoint}/v1/otel",
        PORTKEY_STANDIN_KEY,
        sampler_env=SAMPLER_ENV,
    )
    yield tier
    tier.stop()


def run_apps(apps: Apps, runs: int = RUNS) -> list[SentTrace]:
    failures = apps.wait(timeout=240)
    assert failures == [], failures
    sent = sorted(apps.sent, key=lambda t: t.index)
    assert [t.index for t in sent] == list(range(runs))
    assert all(t.answered for t in sent), "every run reached the seed agent's answer through the gateway"
    assert {len(t.span_ids) for t in sent} == {SPANS_PER_RUN}
    return sent


def sampler_metrics(tier: Tier) -> list[Metrics]:
    return [sampler.metrics() for sampler in tier.samplers]


def all_decided(tier: Tier, runs: int) -> bool:
    """The samplers, by their own metrics, decided on ``runs`` traces and hold none undecided."""
    metrics = sampler_metrics(tier)
    decided = sum(m.total("otelcol_processor_tail_sampling_global_count_traces_sampled") for m in metrics)
    on_memory = sum(m.total("otelcol_processor_tail_sampling_sampling_traces_on_memory") for m in metrics)
    return decided >= runs and on_memory == 0


def assert_jaeger_holds_exactly(
    jaeger: Jaeger, service: str, sent: list[SentTrace], once: bool = True
) -> list[SentTrace]:
    """Jaeger holds every span of every remarkable run (``once``: each span once) and nothing of the
    others; returns the kept runs."""
    kept = [t for t in sent if t.kind != "plain"]
    assert len(kept) == len(sent) // 10

    def all_complete() -> bool:
        return all(set(jaeger_span_ids(jaeger, t.trace_id)) >= t.span_ids for t in kept)

    wait_until(all_complete, timeout=60)
    for run in kept:
        stored = jaeger_span_ids(jaeger, run.trace_id)
        assert set(stored) == run.span_ids, (
            f"run {run.index} ({run.kind}): Jaeger holds {len(set(stored))} spans"
        )
        if once:
            assert len(stored) == SPANS_PER_RUN, f"run {run.index}: a span stored twice"
    assert jaeger_trace_ids(jaeger, service) == {t.trace_id for t in kept}
    dropped = [t for t in sent if t.kind == "plain"]
    assert [t.index for t in dropped if jaeger_span_ids(jaeger, t.trace_id)] == []
    return kept


def assert_each_trace_went_to_one_sampler(tier: Tier, kept: list[SentTrace]) -> list[int]:
    """From what the samplers answered: per kept trace, the one sampler that logged all its spans."""
    logged = [kept_spans_logged(tier.sampler_log(i)) for i in range(len(tier.samplers))]
    owners = []
    for run in kept:
        holders = [i for i, spans in enumerate(logged) if run.trace_id in spans]
        assert len(holders) == 1, f"run {run.index}: logged by samplers {holders}"
        assert logged[holders[0]][run.trace_id] == run.span_ids
        owners.append(holders[0])
    assert set(owners) == {0, 1}, "both samplers kept some of the traces"
    kept_ids = {t.trace_id for t in kept}
    assert all(set(spans) <= kept_ids for spans in logged), "a sampler kept a trace it should have dropped"
    return owners


def test_the_tier_keeps_exactly_the_traces_the_bridge_marks_whole_on_one_sampler(
    tier: Tier, jaeger: Jaeger, oss_gateway: OssGateway
) -> None:
    service = f"seed-agent-{uuid.uuid4().hex[:8]}"
    # spans leave each replica every 200 ms: a run's spans reach the load balancer in several
    # exports, mixed with other runs'
    apps = Apps(tier.entry.otlp_http, oss_gateway.url, plan(), service, token=tier.token)
    try:
        sent = run_apps(apps)
    finally:
        apps.stop()

    wait_until(lambda: all_decided(tier, RUNS), timeout=60)
    kept = assert_jaeger_holds_exactly(jaeger, service, sent)

    metrics = sampler_metrics(tier)
    received = [m.total("otelcol_receiver_accepted_spans", receiver="otlp") for m in metrics]
    new_traces = [m.total("otelcol_processor_tail_sampling_new_trace_id_received") for m in metrics]
    sampled = [
        m.total("otelcol_processor_tail_sampling_global_count_traces_sampled", decision="sampled")
        for m in metrics
    ]
    assert sum(received) == RUNS * SPANS_PER_RUN, "the samplers received every span once"
    # each sampler counts a trace id once: a trace whose spans reached both would count twice
    assert sum(new_traces) == RUNS, new_traces
    assert all(n > 0 for n in new_traces), "the load balancer used both samplers"
    assert sum(sampled) == len(kept)
    owners = assert_each_trace_went_to_one_sampler(tier, kept)
    print(
        f"\nkept {len(kept)} of {len(sent)} traces, {SPANS_PER_RUN} spans each; spans received per sampler "
        f"{received}, traces per sampler {new_traces}, kept per sampler {sampled} "
        f"(debug logs: {[owners.count(i) for i in (0, 1)]})"
    )


def test_a_sampler_killed_mid_run_and_restarted_loses_no_kept_trace(
    tier: Tier, jaeger: Jaeger, oss_gateway: OssGateway
) -> None:
    service = f"seed-agent-{uuid.uuid4().hex[:8]}"
    # Each run is exported whole when it ends (one export per trace): examples/scale-out/README.md,
    # "What a crash loses", says why that matters to a tail sampler and not to the queues.
    apps = Apps(
        tier.entry.otlp_http,
        oss_gateway.url,
        plan(),
        service,
        flush_each_run=True,
        pause=0.05,
        token=tier.token,
    )
    try:
        apps.wait_for(RUNS * 3 // 10, timeout=120)
        at_kill = apps.done()
        tier.kill_sampler(1)
        apps.wait_for(RUNS * 6 // 10, timeout=120)
        at_restart = apps.done()
        tier.restart_sampler(1)
        sent = run_apps(apps)
    finally:
        apps.stop()
    assert 0 < at_kill < at_restart < RUNS, (at_kill, at_restart)

    def drained() -> bool:
        metrics = sampler_metrics(tier)
        on_memory = sum(m.total("otelcol_processor_tail_sampling_sampling_traces_on_memory") for m in metrics)
        queued = tier.entry.metrics().total("otelcol_exporter_queue_size", exporter="load_balancing")
        return on_memory == 0 and queued == 0

    wait_until(drained, timeout=90)
    # At least once: a batch the killed sampler took without answering is sent again to its successor.
    kept = assert_jaeger_holds_exactly(jaeger, service, sent, once=False)
    twice = sum(len(jaeger_span_ids(jaeger, t.trace_id)) - SPANS_PER_RUN for t in kept)
    owners = assert_each_trace_went_to_one_sampler(tier, kept)
    restarted = tier.samplers[1]
    since_restart = kept_spans_logged(tier.sampler_log(1, since_restart=True))
    kept_after_restart = [t.index for t in kept if t.trace_id in since_restart]
    by_killed = [t.index for t, owner in zip(kept, owners, strict=True) if owner == 1]
    received_after_restart = restarted.metrics().total("otelcol_receiver_accepted_spans", receiver="otlp")
    assert received_after_restart > 0, "the restarted sampler took what the load balancer held for it"
    print(
        f"\nkilled sampler 2 after {at_kill} runs, restarted it after {at_restart}; kept {len(kept)} of "
        f"{len(sent)} traces, {SPANS_PER_RUN} spans each, all in Jaeger; sampler 2 kept runs {by_killed}, "
        f"its restarted process {kept_after_restart} (and received {received_after_restart:.0f} spans); "
        f"spans stored twice: {twice}"
    )


def test_the_load_balancer_killed_while_holding_spans_loses_none(
    tier: Tier, jaeger: Jaeger, oss_gateway: OssGateway
) -> None:
    runs = 40
    service = f"seed-agent-{uuid.uuid4().hex[:8]}"
    # Both samplers down: whatever the load balancer accepts stays in its persistent queue.
    for index in range(len(tier.samplers)):
        tier.kill_sampler(index)
    apps = Apps(
        tier.entry.otlp_http, oss_gateway.url, plan(runs), service, flush_each_run=True, token=tier.token
    )
    try:
        sent = run_apps(apps, runs)  # every export answered: the load balancer took each run
    finally:
        apps.stop()

    entry = tier.entry

    def accepted_spans() -> float:
        return entry.metrics().total("otelcol_receiver_accepted_spans", receiver="otlp")

    wait_until(lambda: accepted_spans() == runs * SPANS_PER_RUN, timeout=10)
    accepted = accepted_spans()
    assert accepted == runs * SPANS_PER_RUN, "the load balancer accepted every span"
    queued = entry.metrics().total("otelcol_exporter_queue_size", exporter="load_balancing")
    assert queued > 0, "the load balancer holds the spans it could not send"
    entry.kill()
    for index in range(len(tier.samplers)):
        tier.restart_sampler(index)
    entry.restart()

    wait_until(lambda: all_decided(tier, runs), timeout=90)
    # The restarted load balancer received nothing from the apps (they had ended): what the samplers
    # received since their restart came out of the killed process's queue.
    assert accepted_spans() == 0
    received = sum(m.total("otelcol_receiver_accepted_spans", receiver="otlp") for m in sampler_metrics(tier))
    assert received >= runs * SPANS_PER_RUN, f"the samplers received {received:.0f} spans"
    kept = assert_jaeger_holds_exactly(jaeger, service, sent, once=False)
    print(
        f"\nload balancer killed holding {accepted:.0f} spans of {runs} runs ({queued:.0f} bytes queued); "
        f"after its restart the samplers received {received:.0f} spans and Jaeger holds the {len(kept)} "
        f"kept runs whole"
    )
