"""Tier 2 service wiring: the agent consumer and the knowledge indexer (this process owns Qdrant)."""

from __future__ import annotations

from typing import Any

from faststream import Context
from faststream.kafka.message import KafkaMessage

from schemas.messages import (
    AgentRequestedV1,
    AlertRaisedV1,
    AuditEventRecordedV1,
    ConversationMessageSentV1,
    EscalationOpenedV1,
    KnowledgeArticlePublishedV1,
    NotificationRequestedV1,
    OutcomeRecordedV1,
)
from services.tier2_agent.handlers import AgentDeps, on_agent_requested, on_article_published
from services.tier2_agent.settings import AgentSettings, OpenAISettings
from tierline.experiments import parse_experiments
from tierline.messaging import (
    BATCH_SUBSCRIBER_DEFAULTS,
    SUBSCRIBER_DEFAULTS,
    Inbox,
    batch_records,
    consume_batch,
    consumer_group,
    long_poll,
)
from tierline.pipeline import escalate_failed_message
from tierline.runtime import Service
from tierline.settings import InfraSettings

NAME = "tier2_agent"


def build_agent(cfg: AgentSettings, openai_cfg: OpenAISettings) -> Any:
    from services.tier2_agent.guardrails import detect_injection

    if openai_cfg.api_key is None:
        from services.tier2_agent.planner import OfflinePlanner

        return OfflinePlanner(injection_detector=detect_injection)
    from services.tier2_agent.agent import AgentLoop, AgentLoopSettings

    return AgentLoop(
        AgentLoopSettings(
            model=cfg.openai_model,
            base_url=openai_cfg.base_url,
            api_key=openai_cfg.api_key,
            max_steps=cfg.openai_max_steps,
            request_timeout_s=cfg.openai_timeout_s,
        ),
        injection_detector=detect_injection,
    )


def create_service(
    settings: InfraSettings,
    *,
    actions: Any = None,
    diagnostics: Any = None,
    agent: Any = None,
    knowledge: Any = None,
) -> Service:
    cfg = AgentSettings(**settings.model_dump())
    service = Service.create(NAME, cfg, http_port=cfg.http_port)
    holder: dict[str, Any] = {}

    async def wire(svc: Service) -> None:
        from services.tier2_agent.adapters.qdrant import KnowledgeStore

        diag = diagnostics
        if diag is None:
            from tierline.diagnostics_client import HttpDiagnostics

            diag = HttpDiagnostics(cfg.diagnostics_url, token=cfg.service_token.get_secret_value())
        store = knowledge
        if store is None:
            store = (
                KnowledgeStore.connect(cfg.qdrant_url)
                if cfg.qdrant_url
                else KnowledgeStore.open(cfg.resolved_qdrant_path())
            )
            await store.aload_directory()
        acts = actions
        if acts is None:
            from tierline.actions import ActionExecutor

            acts = ActionExecutor(pool=svc.db, broker=svc.broker, settings=cfg, diagnostics=diag)
        holder["knowledge"] = store
        holder["deps"] = AgentDeps(
            pool=svc.db,
            broker=svc.broker,
            actions=acts,
            diagnostics=diag,
            knowledge=store,
            agent=agent or build_agent(cfg, OpenAISettings()),
            inbox=Inbox(svc.db, consumer_group(NAME)),
            experiments=parse_experiments(cfg.experiments),
        )
        svc.state["agent_deps"] = holder["deps"]  # operators and tests read what runs (e.g. experiments)

    async def close(svc: Service) -> None:
        store = holder.get("knowledge")
        if store is not None and knowledge is None:
            await store.aclose()

    async def knowledge_health() -> tuple[bool, str]:
        store = holder.get("knowledge")
        if store is None:
            return False, "knowledge store not open"
        return True, f"qdrant: {store.count()} passages"

    service.on_start.append(wire)
    service.on_stop.append(close)
    service.health_checks["qdrant"] = knowledge_health
    service.documents_publishing(
        OutcomeRecordedV1,
        EscalationOpenedV1,
        AuditEventRecordedV1,
        NotificationRequestedV1,
        ConversationMessageSentV1,
        AlertRaisedV1,  # the spend breaker (the executor's automatic refunds)
    )

    @long_poll(
        service.broker.subscriber(
            AgentRequestedV1.TOPIC,
            group_id=consumer_group(NAME),
            **BATCH_SUBSCRIBER_DEFAULTS,
            title="tier2_agent:tier2.agent.requested.v1",
        )
    )
    async def on_requests(bodies: list[bytes], message: KafkaMessage = Context("message")) -> None:
        # a batch: customers concurrently, each one's requests in order; publishes awaited together
        async def one(msg: AgentRequestedV1) -> None:
            await on_agent_requested(holder["deps"], msg)

        await consume_batch(service.dead_letters, AgentRequestedV1, bodies, batch_records(message), one)

    @service.broker.subscriber(
        KnowledgeArticlePublishedV1.TOPIC,
        group_id=consumer_group(f"{NAME}.knowledge"),
        **SUBSCRIBER_DEFAULTS,
        title="tier2_agent:knowledge.article.published.v1",
    )
    async def on_article(msg: KnowledgeArticlePublishedV1) -> None:
        await on_article_published(holder["knowledge"], msg)

    async def give_up(body: dict[str, Any], error: BaseException) -> None:
        await escalate_failed_message(service.broker, body, error, opened_by="tier2")

    service.dead_letters.give_up_hooks[AgentRequestedV1.TOPIC] = give_up
    return service
