"""One partition count for code and deploy, and KEDA lag thresholds derived from the measured rates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.capacity import MEASURED, REPLICA_CORES, TRIGGERS, Trigger, lag_threshold, replicas_for
from tests.unit.test_deploy_manifests import COMPOSE, K8S, job_env, load_manifests, of_kind, served_service
from tierline.settings import TOPIC_PARTITIONS


@pytest.fixture(scope="module")
def manifests() -> list[tuple[Path, dict[str, Any]]]:
    return load_manifests(K8S)


def cores(quantity: str | int | float) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_given_code_and_deploy_when_partition_counts_are_read_then_they_are_one_number(
    manifests: list[tuple[Path, dict[str, Any]]],
) -> None:
    assert int(job_env(manifests, "tierline-topics")["PARTITIONS"]) == TOPIC_PARTITIONS
    init = yaml.safe_load(COMPOSE.read_text())["services"]["kafka-init"]["environment"]["PARTITIONS"]
    default = re.fullmatch(r"\$\{TIERLINE_TOPIC_PARTITIONS:-(\d+)\}", str(init))
    assert default is not None, init
    assert int(default.group(1)) == TOPIC_PARTITIONS
    for obj in of_kind(manifests, "ScaledObject"):
        assert obj["spec"]["maxReplicaCount"] <= TOPIC_PARTITIONS, obj["metadata"]["name"]


def test_given_the_scaled_objects_when_read_then_each_lag_threshold_is_the_derived_one(
    manifests: list[tuple[Path, dict[str, Any]]],
) -> None:
    deployments = {d["metadata"]["name"]: served_service(d) for d in of_kind(manifests, "Deployment")}
    found: dict[tuple[str, str, str], int] = {}
    for obj in of_kind(manifests, "ScaledObject"):
        service = deployments[obj["spec"]["scaleTargetRef"]["name"]]
        for trigger in obj["spec"]["triggers"]:
            meta = trigger["metadata"]
            found[(service, meta["consumerGroup"], meta["topic"])] = int(meta["lagThreshold"])
    derived = {(t.service, t.group, t.topic): lag_threshold(t) for t in TRIGGERS}
    assert found == derived


def test_given_the_deployments_when_read_then_the_model_uses_their_guaranteed_cpu(
    manifests: list[tuple[Path, dict[str, Any]]],
) -> None:
    requested = {
        served_service(d): cores(
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
        )
        for d in of_kind(manifests, "Deployment")
    }
    assert {s: requested[s] for s in REPLICA_CORES} == REPLICA_CORES
    assert set(MEASURED) == set(REPLICA_CORES)


def test_given_a_faster_service_when_derived_then_its_threshold_grows_and_it_needs_fewer_replicas() -> None:
    trigger = Trigger("router", "tierline.router", "contact.received.v1", drain_objective_s=5.0)
    slow, fast = {"router": 10.0}, {"router": 100.0}
    assert lag_threshold(trigger, slow) == 25  # 10/s/core x 0.5 core x 5 s
    assert lag_threshold(trigger, fast) == 250
    assert replicas_for("router", 200.0, slow) == 40
    assert replicas_for("router", 200.0, fast) == 4
    assert lag_threshold(trigger, {"router": 0.01}) == 1  # never zero: KEDA needs a positive threshold
