"""Dashboards and alerts as code (deploy/grafana, deploy/prometheus) against what the services export.

Every metric a panel or an alert rule queries is in the services' registry (tierline/metrics.py), with
the labels it selects and groups by; the rules and the scrape config pass `promtool check` (Debian's
prometheus package, fetched by `make promtool`, which `make test` runs); compose starts Prometheus and
Grafana with these files under the "observability" profile.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from tierline import metrics

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "tierline.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
SCRAPE = DEPLOY / "prometheus" / "prometheus.yml"
PROMTOOL = REPO / ".tierline" / "tools" / "promtool"

NAME = re.compile(r"\btierline_[a-z0-9_]+\b")
SELECTOR = re.compile(r"\b(tierline_[a-z0-9_]+)\s*\{([^}]*)\}")
LABEL_MATCH = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
#: labels Prometheus adds to every scraped series
TARGET_LABELS = {"job", "instance"}


def exported_labels() -> dict[str, set[str]]:
    """Series name -> its label names, from the metric objects the services register."""
    out: dict[str, set[str]] = {"tierline_consumer_lag": {"group", "topic", "partition"}}
    for obj in vars(metrics).values():
        if isinstance(obj, Counter | Gauge | Histogram):
            base = obj._name  # the library keeps these private; they are the declared name and labels
            labels = set(obj._labelnames)
            if isinstance(obj, Counter):
                out[f"{base}_total"] = labels
            elif isinstance(obj, Histogram):
                for suffix in ("_bucket", "_count", "_sum"):
                    out[f"{base}{suffix}"] = labels | ({"le"} if suffix == "_bucket" else set())
            else:
                out[base] = labels
    return out


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(panel title, expression, legend format) of every target of every panel."""
    board = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"], target.get("legendFormat", ""))
        for panel in board["panels"]
        for target in panel["targets"]
    ]


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def problems_in(expr: str, exported: dict[str, set[str]]) -> list[str]:
    """What in one PromQL expression the services do not export: names, selected or grouped labels."""
    problems: list[str] = []
    names = set(NAME.findall(expr))
    if not names:
        problems.append("queries no tierline metric")
    problems += [f"{name} is not exported" for name in sorted(names - set(exported))]
    for name, matchers in SELECTOR.findall(expr):
        unknown = set(LABEL_MATCH.findall(matchers)) - exported.get(name, set()) - TARGET_LABELS
        problems += [f"{name} has no label {label}" for label in sorted(unknown)]
    known = set().union(*(exported.get(n, set()) for n in names)) | TARGET_LABELS
    for group in GROUPING.findall(expr):
        grouped = {g.strip() for g in group.split(",") if g.strip()}
        problems += [f"grouped by {label}, which none of {sorted(names)} has" for label in grouped - known]
    return problems


def test_given_the_registry_when_listed_then_the_label_map_matches_what_it_exports() -> None:
    # the test's own view of the registry is the registry's: nothing invented, nothing missed
    exported = exported_labels()
    assert set(exported) <= metrics.metric_names()
    assert {n for n in metrics.metric_names() if n.startswith("tierline_")} - set(exported) == set()


def test_given_the_dashboard_when_its_queries_are_read_then_every_metric_and_label_is_exported() -> None:
    exported = exported_labels()
    found = {
        f"{title}: {problem}"
        for title, expr, legend in dashboard_queries()
        for problem in problems_in(expr, exported)
        + [
            f"legend names {label}, which the query does not keep"
            for label in set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
            - {g.strip() for grp in GROUPING.findall(expr) for g in grp.split(",")}
        ]
    }
    assert found == set()


def test_given_the_dashboard_when_read_then_it_has_the_panels_operators_asked_for() -> None:
    titles = " | ".join(title.lower() for title, _, _ in dashboard_queries())
    for wanted in (
        "tier mix",
        "automated rate",
        "lag per tier",
        "first response p99",
        "refunds per hour",
        "dead letters",
        "stripe errors",
    ):
        assert wanted in titles, wanted
    board = json.loads(DASHBOARD.read_text())
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"] for d in datasource["datasources"]}
    assert {p["datasource"]["uid"] for p in board["panels"]} <= uids


def test_given_the_alert_rules_when_read_then_every_metric_and_label_is_exported() -> None:
    exported = exported_labels()
    found = {f"{rule['alert']}: {p}" for rule in alert_rules() for p in problems_in(rule["expr"], exported)}
    assert found == set()


def test_given_the_alert_rules_when_read_then_each_incident_the_issue_names_has_one() -> None:
    rules = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    lag_groups = {
        group
        for expr in rules.values()
        if "tierline_consumer_lag" in expr
        for group in re.findall(r'group=~?"([^"]+)"', expr)
    }
    for tier in ("router", "tier0_prevent", "tier1_selfheal", "tier2_agent", "tier3_handoff"):
        assert any(tier in group for group in lag_groups), tier
    exprs = "\n".join(rules.values())
    for metric in (
        "tierline_messages_dead_lettered_total",  # dead letters > 0
        "tierline_contact_outcomes_total",  # automated rate drop
        "tierline_refunds_usd_total",  # refund spend spike
        "tierline_stripe_call_errors_total",  # Stripe error rate
        "tierline_llm_call_errors_total",  # LLM error rate
        "tierline_audit_chain_broken",  # audit chain broken
    ):
        assert metric in exprs, metric


def promtool() -> str:
    found = str(PROMTOOL) if PROMTOOL.exists() else shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `make promtool` fetches it (make test does it first)")
    return found


def test_given_the_alert_rules_when_promtool_checks_them_then_they_are_valid() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_given_the_scrape_config_when_promtool_checks_it_then_valid_and_every_service_is_a_target() -> None:
    done = subprocess.run(
        [promtool(), "check", "config", str(SCRAPE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    from tierline.registry import SERVICE_MODULES
    from tierline.settings import DEFAULT_PORTS

    config = yaml.safe_load(SCRAPE.read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{name}:{DEFAULT_PORTS[name]}" for name in SERVICE_MODULES}


def test_given_compose_when_the_observability_profile_is_read_then_prometheus_and_grafana_use_the_files() -> (
    None
):
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["profiles"] == grafana["profiles"] == ["observability"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "./grafana/tierline.json:/var/lib/grafana/dashboards/tierline.json:ro" in grafana["volumes"]
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
