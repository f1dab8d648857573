"""Issue 17's boundaries, as the code wires them: analytics is a service of its own (its own process and
ClickHouse store in the embedded stack), diagnostics serves the diagnosis only, and the CLI reaches the
router's model by name."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest

from schemas.messages import (
    AuditEventRecordedV1,
    CaseResolvedV1,
    ContactReceivedV1,
    ConversationMessageSentV1,
    ConversationRatedV1,
    OutcomeRecordedV1,
    UsageEventRecordedV1,
)
from tests.helpers import built_service
from tierline import cli
from tierline.registry import SERVICE_MODULES
from tierline.settings import InfraSettings
from tierline_tools.stack.inproc import PIPELINE
from tierline_tools.stack.manager import SERVICES, StackConfig

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def no_clickhouse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The DSN rules below are about defaults: the environment running the tests names none."""
    monkeypatch.delenv("TIERLINE_CLICKHOUSE_DSN", raising=False)
    monkeypatch.delenv("TIERLINE_ANALYTICS_CLICKHOUSE_DSN", raising=False)


ANALYST_TOPICS = {
    OutcomeRecordedV1.TOPIC,
    AuditEventRecordedV1.TOPIC,
    CaseResolvedV1.TOPIC,
    # the support stream (issue 19): first responses, ratings, knowledge gaps
    ContactReceivedV1.TOPIC,
    ConversationMessageSentV1.TOPIC,
    ConversationRatedV1.TOPIC,
}


def topics(service: Any) -> set[str]:
    return {t for sub in service.broker.subscribers for t in sub.topic_names}


def paths(service: Any) -> set[str]:
    return {route.path for route in service.routes}


def test_given_the_diagnostics_service_when_built_then_it_consumes_usage_only_and_has_no_analytics_door() -> (
    None
):
    diagnostics = built_service("diagnostics")

    assert topics(diagnostics) == {UsageEventRecordedV1.TOPIC}
    assert not {p for p in paths(diagnostics) if p.startswith("/v1/analytics")}


def test_given_the_analytics_service_when_built_then_it_sinks_the_analyst_stream_and_serves_its_api() -> None:
    analytics = built_service("analytics_sink")

    assert SERVICE_MODULES["analytics_sink"] == "services.analytics.app"
    assert topics(analytics) == ANALYST_TOPICS
    assert {"/v1/analytics/report", "/v1/analytics/audit/verify"} <= paths(analytics)
    assert {sub.group_id for sub in analytics.broker.subscribers} == {
        f"tierline.analytics_sink.analytics.{kind}"
        for kind in ("outcomes", "cases", "audit", "contacts", "messages", "ratings")
    }


def test_given_nothing_set_when_the_dsns_resolve_then_usage_and_analytics_have_their_own_chdb_paths(
    tmp_path: Path,
) -> None:
    settings = InfraSettings(data_dir=tmp_path)

    assert settings.resolved_clickhouse_dsn() == f"chdb://{(tmp_path / 'clickhouse').resolve()}"
    assert settings.resolved_analytics_clickhouse_dsn() == f"chdb://{(tmp_path / 'analytics').resolve()}"


def test_given_a_clickhouse_dsn_when_the_analytics_dsn_resolves_then_it_shares_it_unless_told_otherwise(
    tmp_path: Path,
) -> None:
    server = "http://clickhouse:8123/tierline"

    assert (
        InfraSettings(data_dir=tmp_path, clickhouse_dsn=server).resolved_analytics_clickhouse_dsn() == server
    )
    own = InfraSettings(data_dir=tmp_path, clickhouse_dsn=server, analytics_clickhouse_dsn="chdb:///x")
    assert own.resolved_analytics_clickhouse_dsn() == "chdb:///x"


def test_given_the_embedded_stack_when_listed_then_analytics_runs_beside_diagnostics_and_tools_find_it(
    tmp_path: Path,
) -> None:
    cfg = StackConfig.for_tests(tmp_path)

    assert {"diagnostics", "analytics_sink"} <= set(SERVICES)
    assert {"diagnostics", "analytics_sink"} <= set(PIPELINE)
    assert cfg.env()["TIERLINE_ANALYTICS_URL"] == f"http://127.0.0.1:{cfg.service_ports['analytics_sink']}"
    assert cfg.settings().analytics_url == cfg.env()["TIERLINE_ANALYTICS_URL"]


def test_given_the_stack_env_when_report_and_audit_parse_then_they_ask_the_analytics_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.analytics.audit_chain import audit_main
    from services.analytics.report import build_parser

    cfg = StackConfig.for_tests(tmp_path)
    for name, value in cfg.env().items():
        monkeypatch.setenv(name, value)
    seen: dict[str, Any] = {}

    def fake_verify(args: Any) -> dict[str, Any]:
        seen["url"], seen["dsn"] = args.url, args.clickhouse_dsn
        return {"ok": True, "checked": 0, "broken": None}

    monkeypatch.setattr("services.analytics.audit_chain.verify", fake_verify)
    args = build_parser().parse_args([])

    assert args.url == cfg.env()["TIERLINE_ANALYTICS_URL"]
    assert args.clickhouse_dsn == f"chdb://{(tmp_path / 'analytics').resolve()}"
    assert audit_main(["verify", "--json"]) == 0
    assert seen == {"url": args.url, "dsn": args.clickhouse_dsn}


def test_given_tierline_classify_when_run_then_the_router_model_is_reached_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import services.router.intent.model as model

    def fake_classify(stdin: io.TextIOBase, stdout: io.TextIOBase) -> int:
        for line in stdin:
            stdout.write(f'{{"text": "{line.strip()}"}}\n')
        return 0

    monkeypatch.setattr(model, "classify_main", fake_classify)
    monkeypatch.setattr(sys, "stdin", io.StringIO("my card got declined\n"))

    args = cli.build_parser().parse_args(["classify"])  # (cli.main would set up logging on capsys)
    args.rest = []

    assert args.delegated  # by module name, like `demo`
    assert args.func(args) == 0
    assert capsys.readouterr().out == '{"text": "my card got declined"}\n'
