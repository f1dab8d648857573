"""Offline checks of deploy/: Kubernetes manifests, KEDA ScaledObjects, compose file, Dockerfile, secrets.

Built-in kinds are validated with kubernetes_validate (strict JSON schemas of a pinned Kubernetes
version); KEDA's ScaledObject is a CRD it has no schema for, so its required structure is checked here.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from schemas import TOPICS
from tests.helpers import built_service
from tierline.registry import SERVICE_MODULES
from tierline.settings import DEFAULT_PORTS, InfraSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"

K8S_VERSION = "1.33.0"  # kubernetes_validate 1.37 ships schemas for 1.25 .. 1.37

CORE_SERVICES = ("router", "tier0_prevent", "tier1_selfheal", "tier2_agent", "tier3_handoff", "diagnostics")
SERVICES = (*CORE_SERVICES, "notifier", "analytics_sink")
HTTP_PORTS = {"tier0_prevent": 8100, "tier1_selfheal": 8101, "tier3_handoff": 8103, "diagnostics": 8104}
# The doors outsiders use (behind TLS): Stripe's webhooks, customers' Health Meter, agents' console.
PUBLIC_DOORS = {"tier0_prevent": 8100, "tier1_selfheal": 8101, "tier3_handoff": 8103}
# Every process serves /livez (liveness), /healthz and /readyz (dependencies) on its one HTTP port
# (TIERLINE_HTTP_PORT); the code's DEFAULT_PORTS win, analytics_sink is not in them yet.
SERVICE_PORTS = {"analytics_sink": 8107, **DEFAULT_PORTS}
# The topic whose consumer-group lag scales each service (KEDA kafka triggers).
SCALING_TOPICS = {
    "router": {"contact.received.v1"},
    "tier0_prevent": {"stripe.event.received.v1"},
    "tier1_selfheal": {"tier1.selfheal.requested.v1"},
    "tier2_agent": {"tier2.agent.requested.v1"},
    "tier3_handoff": {"tier3.escalation.opened.v1"},
    "notifier": {"notification.requested.v1", "conversation.message.sent.v1"},
    "analytics_sink": {
        "contact.outcome.recorded.v1",
        "audit.event.recorded.v1",
        "contact.received.v1",
        "conversation.message.sent.v1",
    },
}
INFRA_COMPONENTS = ("kafka", "kafka-init", "postgres", "migrate", "clickhouse", "qdrant")
# Environment variables the code reads that are not InfraSettings fields.
EXTRA_SETTINGS = {"TIERLINE_OPENAI_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL"}
PLACEHOLDER = re.compile(r"^(REPLACE_ME|CHANGE_ME)$")

SCALED_OBJECT_SPEC_KEYS = {
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "fallback",
    "advanced",
    "triggers",
}
KAFKA_TRIGGER_REQUIRED = ("bootstrapServers", "consumerGroup", "topic", "lagThreshold")


# --------------------------------------------------------------------------- the validators
class ManifestInvalid(Exception):
    """A manifest that Kubernetes (or KEDA) would reject."""


def load_manifests(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every resource in every *.yaml of ``directory`` except the kustomization itself."""
    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def scaled_object_problems(obj: Mapping[str, Any], deployment_names: Iterable[str]) -> list[str]:
    """What KEDA needs from a ScaledObject with kafka triggers; empty when it is well formed."""
    problems: list[str] = []
    if obj.get("apiVersion") != "keda.sh/v1alpha1":
        problems.append(f"apiVersion {obj.get('apiVersion')!r} is not keda.sh/v1alpha1")
    if not isinstance(obj.get("metadata"), dict) or not obj["metadata"].get("name"):
        problems.append("metadata.name missing")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [*problems, "spec missing"]
    problems += [f"unknown spec field {key!r}" for key in sorted(set(spec) - SCALED_OBJECT_SPEC_KEYS)]
    target = spec.get("scaleTargetRef")
    if not isinstance(target, dict) or not isinstance(target.get("name"), str):
        problems.append("spec.scaleTargetRef.name missing")
    else:
        if target["name"] not in set(deployment_names):
            problems.append(f"scaleTargetRef.name {target['name']!r} is not a Deployment")
        if target.get("kind", "Deployment") != "Deployment":
            problems.append(f"scaleTargetRef.kind {target.get('kind')!r} is not Deployment")
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high and high >= 1):
        problems.append(f"replica bounds min={low!r} max={high!r} are not 0 <= min <= max, max >= 1")
    triggers = spec.get("triggers")
    if not isinstance(triggers, list) or not triggers:
        return [*problems, "spec.triggers must be a non-empty list"]
    for i, trigger in enumerate(triggers):
        meta = trigger.get("metadata") if isinstance(trigger, dict) else None
        if not isinstance(trigger, dict) or trigger.get("type") != "kafka" or not isinstance(meta, dict):
            problems.append(f"triggers[{i}] is not a kafka trigger with metadata")
            continue
        problems += [
            f"triggers[{i}].metadata.{key} missing" for key in KAFKA_TRIGGER_REQUIRED if key not in meta
        ]
        problems += [
            f"triggers[{i}].metadata.{key} must be a string (map[string]string), got {value!r}"
            for key, value in meta.items()
            if not isinstance(value, str)
        ]
        lag = meta.get("lagThreshold")
        if isinstance(lag, str) and not (lag.isdigit() and int(lag) > 0):
            problems.append(f"triggers[{i}].metadata.lagThreshold {lag!r} is not a positive integer")
    return problems


def validate_manifest(doc: Mapping[str, Any], deployment_names: Iterable[str]) -> None:
    """Raise ManifestInvalid unless ``doc`` is a valid resource; unknown kinds are invalid too."""
    if doc.get("kind") == "ScaledObject":
        problems = scaled_object_problems(doc, deployment_names)
        if problems:
            raise ManifestInvalid("; ".join(problems))
        return
    try:
        kubernetes_validate.validate(dict(doc), K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        raise ManifestInvalid(f"{doc.get('kind')}: {where}: {exc.message}") from exc
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise ManifestInvalid(exc.message) from exc


def validate_directory(directory: Path) -> list[str]:
    """All problems of all manifests in ``directory``, as ``file: kind/name: reason`` lines."""
    docs = load_manifests(directory)
    deployments = [d["metadata"]["name"] for _, d in docs if d.get("kind") == "Deployment"]
    problems = []
    for path, doc in docs:
        try:
            validate_manifest(doc, deployments)
        except ManifestInvalid as exc:
            name = doc.get("metadata", {}).get("name")
            problems.append(f"{path.name}: {doc.get('kind')}/{name}: {exc}")
    return problems


SECRET_PATTERNS = {
    "Stripe live key": re.compile(r"\b[sr]k_live_[0-9A-Za-z]{8,}"),
    "Stripe test key": re.compile(r"\b[sr]k_test_[0-9A-Za-z]{16,}"),
    "Stripe webhook secret": re.compile(r"\bwhsec_[0-9A-Za-z]{16,}"),
    "OpenAI key": re.compile(r"\bsk-(?:proj-)?[0-9A-Za-z_-]{20,}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}
DSN_PASSWORD = re.compile(r"[a-z+]+://[^:/\s@]+:([^@\s]+)@")
PASSWORD_PLACEHOLDERS = {"PASSWORD", "REPLACE_ME", "CHANGE_ME"}


def committed_secret_findings(text: str) -> list[str]:
    """Things in ``text`` that look like real credentials rather than placeholders or ${VARS}."""
    findings = [name for name, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    for match in DSN_PASSWORD.finditer(text):
        password = match.group(1)
        if not password.startswith("${") and password not in PASSWORD_PLACEHOLDERS:
            findings.append(f"password inside DSN {match.group(0)!r}")
    return findings


# --------------------------------------------------------------------------- fixtures / helpers
@pytest.fixture(scope="module")
def manifests() -> list[tuple[Path, dict[str, Any]]]:
    return load_manifests(K8S)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def of_kind(docs: list[tuple[Path, dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in docs if doc["kind"] == kind]


def container(deployment: Mapping[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return dict(containers[0])


def served_service(deployment: Mapping[str, Any]) -> str:
    c = container(deployment)
    assert c["command"] == ["tierline"], c
    assert c["args"][0] == "serve", c["args"]
    assert len(c["args"]) == 2, c["args"]
    return str(c["args"][1])


def deployments_by_service(docs: list[tuple[Path, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {served_service(d): d for d in of_kind(docs, "Deployment")}


def configmap_data(docs: list[tuple[Path, dict[str, Any]]]) -> dict[str, str]:
    (cm,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "tierline-config"]
    return dict(cm["data"])


def job_env(docs: list[tuple[Path, dict[str, Any]]], job: str) -> dict[str, str]:
    (doc,) = [d for d in of_kind(docs, "Job") if d["metadata"]["name"] == job]
    return {e["name"]: e.get("value", "") for e in container_env(doc["spec"]["template"]["spec"])}


def container_env(pod_spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec["containers"][0].get("env", []))


# --------------------------------------------------------------------------- k8s: schema validity
@pytest.mark.unit
def test_given_the_k8s_directory_when_every_manifest_is_validated_then_none_is_rejected() -> None:
    """Given deploy/k8s, When each resource is checked (strict k8s schemas, KEDA structure), Then all pass."""
    assert load_manifests(K8S), "no manifests found"
    assert validate_directory(K8S) == []


@pytest.mark.unit
def test_given_broken_copies_in_a_tmp_dir_when_validated_then_each_breakage_is_reported(
    tmp_path: Path,
) -> None:
    """Given a copy of deploy/k8s with one defect per kind, When validated, Then every defect is named."""
    for path in K8S.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    docs = list(yaml.safe_load_all((tmp_path / "router.yaml").read_text()))
    deployment, scaled = docs[0], docs[1]
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    deployment["spec"]["replica"] = 2  # typo of replicas: only a strict schema notices
    scaled["spec"]["scaleTargetRef"]["name"] = "no-such-deployment"
    del scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"]
    (tmp_path / "router.yaml").write_text(yaml.safe_dump_all(docs))

    problems = validate_directory(tmp_path)

    assert len(problems) == 2, problems
    deployment_problem, scaled_problem = sorted(problems)
    assert deployment_problem.startswith("router.yaml: Deployment/router:")
    assert "replica" in deployment_problem or "eighty" in deployment_problem
    assert "no-such-deployment" in scaled_problem
    assert "lagThreshold missing" in scaled_problem


@pytest.mark.unit
def test_given_an_unknown_kind_when_validated_then_it_is_rejected_not_skipped() -> None:
    """Given a resource kind with no schema, When validated, Then it fails instead of passing silently."""
    with pytest.raises(ManifestInvalid, match="Couldn't find schema"):
        validate_manifest({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}, [])


@pytest.mark.unit
@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s["spec"].update(maxReplicas=3), "unknown spec field 'maxReplicas'"),
        (lambda s: s["spec"]["triggers"][0]["metadata"].update(lagThreshold=50), "must be a string"),
        (
            lambda s: s["spec"]["triggers"][0]["metadata"].update(lagThreshold="lots"),
            "not a positive integer",
        ),
        (lambda s: s["spec"]["triggers"][0].update(type="rabbitmq"), "not a kafka trigger"),
        (lambda s: s["spec"].update(minReplicaCount=5, maxReplicaCount=2), "replica bounds"),
        (lambda s: s["spec"]["triggers"][0]["metadata"].pop("bootstrapServers"), "bootstrapServers missing"),
        (lambda s: s["spec"].update(triggers=[]), "non-empty"),
    ],
)
def test_given_a_defective_scaled_object_when_checked_then_the_defect_is_named(
    manifests: list[tuple[Path, dict[str, Any]]], mutate: Any, expected: str
) -> None:
    """Given a real ScaledObject with one defect, When checked, Then the problem list names it."""
    original = of_kind(manifests, "ScaledObject")[0]
    names = [d["metadata"]["name"] for d in of_kind(manifests, "Deployment")]
    assert scaled_object_problems(original, names) == []
    broken = copy.deepcopy(original)
    mutate(broken)
    assert any(expected in p for p in scaled_object_problems(broken, names))


# --------------------------------------------------------------------------- k8s: wiring
@pytest.mark.unit
def test_given_the_deployments_when_read_then_there_is_one_per_real_service(
    manifests: list[tuple[Path, dict[str, Any]]],
) -> None:
    """Given every Deployment, When its command is read, Then each runs `tierline serve <svc>` once."""
    served = [served_service(d) for d in of_kind(manifests, "Deployment")]
    assert sorted(served) == sorted(SERVICES)
    for service in CORE_SERVICES:
        assert (ROOT / "services" / service / "__init__.py").is_file(), f"no package services/{service}"
    assert set(SERVICE_MODULES) <= set(SERVICES), "a service `tierline serve` knows is not deployed"


@pytest.mark.unit
def test_given_each_deployment_when_inspected_then_probes_resources_and_config_are_set(
    manifests: list[tuple[Path, dict[str, Any]]],
) -> None:
    """Given each Deployment, When inspected, Then: probes on its port, requests+limits, config+secret."""
    assert HTTP_PORTS.items() <= SERVICE_PORTS.items()
    for service, deployment in deployments_by_service(manifests).items():
        c = container(deployment)
        assert [(p["name"], p["containerPort"]) for p in c["ports"]] == [("http", SERVICE_PORTS[service])]
        assert {e["name"]: e["value"] for e in c["env"]} == {
            "TIERLINE_HTTP_PORT": str(SERVICE_PORTS[service])
        }
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, service
        assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}, service
        for bound in ("requests", "limits"):
            assert set(c["resources"][bound]) == {"cpu", "memory"}, (service, bound)
        sources = [next(iter(s.values()))["name"] for s in c["envFrom"]]
        assert sources == ["tierline-config", "tierline-secrets"], service
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), service


@pytest.mark.unit
def test_given_the_http_services_when_read_then_each_targets_its_deployment_port(
    manifests: list[tuple[Path, dict[str, Any]]],
) -> None:
    """Given the Services, When matched to Deployments, Then exactly the HTTP doors are exposed."""
    deployments = deployments_by_service(manifests)
    exposed = {}
    for svc in of_kind(manifests, "Service"):
        (target,) = [
            name
            for name, d in deployments.items()
            if svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        (port,) = svc["spec"]["ports"]
        exposed[target] = port["port"]
        assert port["targetPort"] == "http"
    assert exposed == HTTP_PORTS


def subscriptions(service: str) -> set[tuple[str, str]]:
    """(consumer group, topic) of every subscriber the service's code declares."""
    built = built_service(service)
    return {(str(s.group_id), t) for s in built.broker.subscribers for t in s.topic_names}


@pytest.mark.unit
def test_given_the_scaled_objects_when_read_then_groups_topics_and_brokers_match_the_services(
    manifests: list[tuple[Path, dict[str, Any]]],
) -> None:
    """Given the ScaledObjects, When read, Then each scales on the lag of a group and topic its service
    really consumes."""
    deployments = {d["metadata"]["name"]: served_service(d) for d in of_kind(manifests, "Deployment")}
    bootstrap = configmap_data(manifests)["TIERLINE_KAFKA_BOOTSTRAP"]
    partitions = int(job_env(manifests, "tierline-topics")["PARTITIONS"])
    scaled: dict[str, set[str]] = {}
    for obj in of_kind(manifests, "ScaledObject"):
        service = deployments[obj["spec"]["scaleTargetRef"]["name"]]
        assert obj["spec"]["maxReplicaCount"] <= partitions, f"{service}: replicas past partitions idle"
        consumed = subscriptions(service)
        for trigger in obj["spec"]["triggers"]:
            meta = trigger["metadata"]
            # the lag KEDA reads must be that of a group the service really consumes the topic with
            assert (meta["consumerGroup"], meta["topic"]) in consumed, (service, meta)
            assert meta["topic"] in TOPICS
            assert meta["bootstrapServers"] == bootstrap
            scaled.setdefault(service, set()).add(meta["topic"])
    assert scaled == SCALING_TOPICS


@pytest.mark.unit
def test_given_the_ingress_when_disrupted_then_a_pdb_keeps_a_pod_and_keda_keeps_two(
    manifests: list[tuple[Path, dict[str, Any]]],
) -> None:
    """Given the tier0 webhook ingress, When nodes drain, Then its PDB keeps >= 1 of >= 2 replicas."""
    ingress = deployments_by_service(manifests)["tier0_prevent"]
    pod_labels = ingress["spec"]["template"]["metadata"]["labels"]
    pdbs = [
        p
        for p in of_kind(manifests, "PodDisruptionBudget")
        if p["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ]
    assert [p["spec"]["minAvailable"] for p in pdbs] == [1]
    (scaled,) = [
        s
        for s in of_kind(manifests, "ScaledObject")
        if s["spec"]["scaleTargetRef"]["name"] == ingress["metadata"]["name"]
    ]
    assert scaled["spec"]["minReplicaCount"] >= 2


@pytest.mark.unit
def test_given_the_topics_job_when_read_then_it_creates_exactly_the_schema_topics(
    manifests: list[tuple[Path, dict[str, Any]]],
) -> None:
    """Given the k8s topic-creation Job, When its topic list is read, Then it equals schemas.TOPICS."""
    env = job_env(manifests, "tierline-topics")
    assert set(env["TOPICS"].split()) == set(TOPICS)
    assert int(env["PARTITIONS"]) > 1
    assert int(env["REPLICATION_FACTOR"]) >= 3
    (migrate,) = [d for d in of_kind(manifests, "Job") if d["metadata"]["name"] == "tierline-migrate"]
    assert migrate["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


@pytest.mark.unit
def test_given_the_kustomization_when_read_then_it_applies_every_manifest_but_the_secret_template() -> None:
    """Given kustomization.yaml, When compared to the files, Then all but secret.example.yaml are listed."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.example.yaml"}
    assert kustomization["namespace"] == "tierline"


@pytest.mark.unit
def test_given_config_and_secret_keys_when_read_then_each_is_a_setting_the_code_reads(
    manifests: list[tuple[Path, dict[str, Any]]], compose: dict[str, Any]
) -> None:
    """Given the env var names in ConfigMap, Secret and compose, When compared, Then none is a typo."""
    from services.diagnostics.settings import DiagnosticsSettings

    known = {f"TIERLINE_{name.upper()}" for name in InfraSettings.model_fields} | EXTRA_SETTINGS
    known |= {f"TIERLINE_DIAGNOSTICS_{name.upper()}" for name in DiagnosticsSettings.model_fields}
    (secret,) = of_kind(manifests, "Secret")
    names = set(configmap_data(manifests)) | set(secret["stringData"])
    names |= set(compose["services"]["router"]["environment"])
    assert names - known == set()
    assert "TIERLINE_STRIPE_API_BASE" not in names, "production must talk to the real Stripe"


# --------------------------------------------------------------------------- secrets
@pytest.mark.unit
def test_given_the_secret_template_when_read_then_it_holds_placeholders_only(
    manifests: list[tuple[Path, dict[str, Any]]],
) -> None:
    """Given every Secret in deploy/k8s, When read, Then it is the template, with placeholders only."""
    secrets = [(p.name, d) for p, d in manifests if d["kind"] == "Secret"]
    assert [name for name, _ in secrets] == ["secret.example.yaml"]
    (_, secret) = secrets[0]
    assert "data" not in secret
    assert {k: v for k, v in secret["stringData"].items() if not PLACEHOLDER.match(v)} == {}


@pytest.mark.unit
def test_given_every_file_under_deploy_when_scanned_then_no_credential_is_committed() -> None:
    """Given each file in deploy/ (but a local .env), When scanned, Then nothing looks like a real secret."""
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and p.name != ".env"]
    assert files
    findings = {
        str(p.relative_to(DEPLOY)): f for p in files if (f := committed_secret_findings(p.read_text()))
    }
    assert findings == {}
    env_example = dict(
        line.split("=", 1)
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    secret_like = {k: v for k, v in env_example.items() if re.search("PASSWORD|KEY|SECRET", k)}
    assert secret_like
    assert all(PLACEHOLDER.match(v) for v in secret_like.values()), secret_like


@pytest.mark.unit
@pytest.mark.parametrize(
    "leak",
    [
        "TIERLINE_STRIPE_API_KEY: rk_live_51Habcdefghijklmnop",
        "TIERLINE_STRIPE_WEBHOOK_SECRETS: whsec_0123456789abcdefghij",
        "OPENAI_API_KEY: sk-proj-abcdefghijklmnopqrstuvwxyz",
        "TIERLINE_POSTGRES_DSN: postgresql://tierline:hunter2@db:5432/tierline",
        "-----BEGIN RSA PRIVATE KEY-----",
    ],
)
def test_given_a_planted_credential_when_scanned_then_it_is_found(leak: str) -> None:
    """Given a manifest line with a credential-looking value, When scanned, Then the scanner reports it."""
    assert committed_secret_findings(f"data:\n  {leak}\n")
    assert committed_secret_findings("dsn: postgresql://tierline:${POSTGRES_PASSWORD:?x}@db/t") == []


# --------------------------------------------------------------------------- public and internal doors
def secrets_the_refusal_checks() -> set[str]:
    """Every variable a process refuses to start without, outside the embedded stack (from the code)."""
    from tierline.settings import BUILTIN_SERVICE_TOKEN, BUILTIN_SESSION_SECRET

    prod = InfraSettings.model_construct(
        **{
            **{n: f.default for n, f in InfraSettings.model_fields.items()},
            "stripe_api_base": None,
            "http_host": "0.0.0.0",  # noqa: S104
        }
    )
    assert prod.session_secret.get_secret_value() == BUILTIN_SESSION_SECRET
    assert prod.service_token.get_secret_value() == BUILTIN_SERVICE_TOKEN
    return set(prod.unsafe_defaults())


@pytest.mark.unit
def test_given_the_k8s_services_when_read_then_internal_ones_are_cluster_internal_and_marked(
    manifests: list[tuple[Path, dict[str, Any]]],
) -> None:
    """Given every k8s Service, When read, Then none is NodePort/LoadBalancer/externalIPs, each says
    whether it is a public door or internal, and only the public doors are marked public."""
    deployments = deployments_by_service(manifests)
    exposure: dict[str, str] = {}
    for svc in of_kind(manifests, "Service"):
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", svc["metadata"]["name"]
        assert "externalIPs" not in svc["spec"], svc["metadata"]["name"]
        (target,) = [
            name
            for name, d in deployments.items()
            if svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        exposure[target] = svc["metadata"].get("annotations", {}).get("tierline.io/exposure", "")
    assert {name for name, how in exposure.items() if how == "public"} == set(PUBLIC_DOORS)
    assert {name for name, how in exposure.items() if how != "public"} == {"diagnostics"}
    assert exposure["diagnostics"] == "internal"
    policies = [
        p
        for p in of_kind(manifests, "NetworkPolicy")
        if p["spec"]["podSelector"]["matchLabels"].items()
        <= deployments["diagnostics"]["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert policies, "diagnostics: no NetworkPolicy keeps its API internal"
    assert [p["spec"]["policyTypes"] for p in policies] == [["Ingress"]]


@pytest.mark.unit
def test_given_compose_when_read_then_internal_services_publish_no_port_and_doors_only_loopback(
    compose: dict[str, Any],
) -> None:
    """Given compose.yaml, When the ports are read, Then internal services publish none and the public
    doors only on 127.0.0.1 (for a TLS proxy), and the file says which is which."""
    services = compose["services"]
    for name in SERVICES:
        ports = services[name].get("ports", [])
        if name in PUBLIC_DOORS:
            assert ports == [f"127.0.0.1:{PUBLIC_DOORS[name]}:{PUBLIC_DOORS[name]}"], name
        else:
            assert ports == [], f"{name} is internal but publishes {ports}"
    text = COMPOSE.read_text()
    for name in SERVICES:
        marker = "PUBLIC" if name in PUBLIC_DOORS else "INTERNAL"
        block = text[text.index(f"\n  {name}:") :].split("\n\n", 1)[0]  # the service, up to a blank line
        assert marker in block, (name, marker)


@pytest.mark.unit
def test_given_the_refusal_when_compared_with_the_deploy_files_then_every_secret_it_checks_is_set(
    manifests: list[tuple[Path, dict[str, Any]]], compose: dict[str, Any]
) -> None:
    """Given the secrets a process refuses to start without, When the k8s Secret template, compose and
    env.example are read, Then each is set there (required in compose, a placeholder elsewhere) and
    none is in the ConfigMap."""
    required = secrets_the_refusal_checks()
    assert required == {
        "TIERLINE_STRIPE_API_KEY",
        "TIERLINE_STRIPE_WEBHOOK_SECRETS",
        "TIERLINE_SESSION_SECRET",
        "TIERLINE_SERVICE_TOKEN",
    }
    (secret,) = of_kind(manifests, "Secret")
    assert required <= set(secret["stringData"])
    assert required.isdisjoint(configmap_data(manifests))
    for name in SERVICES:
        env = compose["services"][name]["environment"]
        for var in required:
            assert str(env.get(var, "")).startswith(f"${{{var}:?"), (name, var)
    env_example = {
        line.split("=", 1)[0] for line in (DEPLOY / "env.example").read_text().splitlines() if "=" in line
    }
    assert required <= env_example


# --------------------------------------------------------------------------- compose
@pytest.mark.unit
def test_given_compose_when_read_then_every_service_and_component_is_there(compose: dict[str, Any]) -> None:
    """Given compose.yaml, When read, Then it runs the infrastructure and one container per service."""
    services = compose["services"]
    assert set(services) >= {*INFRA_COMPONENTS, *SERVICES, "localstripe", "mailpit"}
    for name in SERVICES:
        assert services[name]["command"] == ["serve", name], name
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile", name
        assert "profiles" not in services[name], name
    assert services["migrate"]["command"] == ["migrate"]
    assert services["localstripe"]["profiles"] == ["localstripe"]
    assert services["mailpit"]["profiles"] == ["dev"]
    published = {
        name: int(port.split(":")[-2]) for name in SERVICES for port in services[name].get("ports", [])
    }
    assert published == PUBLIC_DOORS


@pytest.mark.unit
def test_given_compose_infrastructure_when_read_then_it_is_kraft_kafka_pg16_clickhouse_and_qdrant(
    compose: dict[str, Any],
) -> None:
    """Given the infrastructure, When read, Then Kafka is KRaft and topic-init makes every topic."""
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert set(kafka["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in kafka["environment"])
    init = services["kafka-init"]
    assert set(init["environment"]["TOPICS"].split()) == set(TOPICS)
    assert init["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:")
    env = services["router"]["environment"]
    assert env["TIERLINE_CLICKHOUSE_DSN"].startswith("http://")
    assert env["TIERLINE_QDRANT_URL"].endswith("qdrant:6333}")


@pytest.mark.unit
def test_given_compose_dependencies_when_resolved_then_each_waits_on_a_real_checkable_state(
    compose: dict[str, Any],
) -> None:
    """Given every depends_on, When resolved, Then targets exist and are healthchecked as required."""
    services = compose["services"]
    valid = {"service_healthy", "service_started", "service_completed_successfully"}
    for name, spec in services.items():
        for target, rule in spec.get("depends_on", {}).items():
            assert target in services, (name, target)
            assert rule["condition"] in valid, (name, target)
            if rule["condition"] == "service_healthy":
                check = services[target].get("healthcheck", {})
                assert check.get("test"), (name, target)
                assert not check.get("disable"), (name, target)
    for name in SERVICES:
        spec = services[name]
        assert spec["depends_on"] == {
            "kafka-init": {"condition": "service_completed_successfully"},
            "migrate": {"condition": "service_completed_successfully"},
            "clickhouse": {"condition": "service_healthy"},
            "qdrant": {"condition": "service_healthy"},
        }, name
        assert spec["environment"]["TIERLINE_HTTP_PORT"] == str(SERVICE_PORTS[name]), name
        probe = " ".join(spec["healthcheck"]["test"])
        assert "TIERLINE_HTTP_PORT" in probe, name
        assert "/readyz" in probe, name
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}


# --------------------------------------------------------------------------- Dockerfile
@pytest.mark.unit
def test_given_the_dockerfile_when_read_then_it_installs_locked_as_non_root_with_the_cli_entrypoint() -> None:
    """Given deploy/Dockerfile, When read, Then: 3.11-slim, locked install, numeric non-root user, CLI."""
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    assert any('pip install -c requirements.lock ".${EXTRAS}"' in line for line in lines)
    assert 'ARG EXTRAS=""' in lines  # the runtime alone unless a build asks for the tooling extra
    (user,) = [line for line in lines if line.startswith("USER ")]
    assert int(user.split()[1].split(":")[0]) > 0
    assert lines.index(user) > max(i for i, line in enumerate(lines) if "pip install" in line)
    assert 'ENTRYPOINT ["tierline"]' in lines


# --------------------------------------------------------------------------- kustomize render
@pytest.mark.integration
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with built-in kustomize) not installed")
def test_given_kustomize_when_rendered_then_scaled_objects_follow_the_configmap_broker(
    tmp_path: Path,
) -> None:
    """Given a copy of deploy/k8s with another broker in the ConfigMap, When rendered, Then KEDA follows."""
    for path in K8S.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    cm = tmp_path / "configmap.yaml"
    cm.write_text(
        re.sub(r"TIERLINE_KAFKA_BOOTSTRAP: \S+", "TIERLINE_KAFKA_BOOTSTRAP: b1.prod:9093", cm.read_text())
    )

    out = subprocess.run(["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60)

    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    brokers = {
        t["metadata"]["bootstrapServers"]
        for d in docs
        if d["kind"] == "ScaledObject"
        for t in d["spec"]["triggers"]
    }
    assert brokers == {"b1.prod:9093"}
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"tierline"}
    assert "Secret" not in {d["kind"] for d in docs}
