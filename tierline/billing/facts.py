"""One repository of a customer's policy facts, and ONE rule for each fact two callers used to decide twice.

The router's gates (``services/router``) and the policy's :class:`~tierline.billing.policy.PolicyContext`
(built by the action executor) are both derived from :class:`CustomerFacts`, read in one round trip by
:class:`PostgresFacts` (``FACTS_SQL``): the subscription store's customer row (email, plan tier, risk
flags), the Stripe mirror's customer email, disputes and refunds, tierline's ledger (refunds in the
window, today's actions, retries per invoice) and the customer's recent contacts.

The rules live here and nowhere else:

* :func:`dispute_open`: Stripe's record shows a dispute that is not closed (the mirror, or the diagnosis
  computed from it, which also names ``dispute_open`` as a root or secondary cause);
* :func:`fraud_signal`: a fraud flag in ``customers.risk_flags`` (:func:`tierline.risk.fraud_flagged`) or a
  diagnosis whose root cause is a fraud decline;
* :func:`plan_of`: the plan the diagnosis read from the subscription, else the subscription store's tier.

Facts come from records, never from what a customer or a model wrote.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from schemas.messages import DiagnosisView
from schemas.vocab import RootCause
from tierline.billing.policy import ActorKind, ChargeFacts, PolicyContext, PolicyEngine, RefundFact
from tierline.risk import fraud_flagged

#: Dispute statuses that no longer hold the account: anything else (Stripe's ``needs_response``,
#: ``under_review``, the ``warning_*`` inquiries, a status this code does not know) counts as open.
CLOSED_DISPUTE_STATUSES: frozenset[str] = frozenset({"won", "lost", "closed", "warning_closed"})
#: Root causes of a diagnosis that are a fraud signal by themselves.
FRAUD_CAUSES: frozenset[RootCause] = frozenset({RootCause.CARD_DECLINED_FRAUD})
#: How many days of contacts count as repeat contacts (the router's default window).
REPEAT_WINDOW_DAYS = 7


@dataclass(frozen=True, slots=True)
class DisputeFact:
    """One dispute as Stripe's mirror holds it."""

    id: str
    status: str
    charge_id: str | None = None


@dataclass(frozen=True)
class CustomerFacts:
    """What the records say about one customer at one moment (one :class:`FactsRepository` read)."""

    customer_id: str
    #: The customer has a row in the subscription store / in Stripe's mirror.
    in_store: bool = False
    in_mirror: bool = False
    store_email: str | None = None
    mirror_email: str | None = None
    #: The subscription store's plan tier (kept by the mirror's subscription sync).
    store_plan: str | None = None
    risk_flags: Mapping[str, Any] = field(default_factory=dict)
    disputes: tuple[DisputeFact, ...] = ()
    #: Refunds in the policy's window: Stripe's (the mirror) and tierline's ledger's, overlapping by id.
    refunds: tuple[RefundFact, ...] = ()
    #: The customer's other contacts in the repeat window.
    repeat_contacts: int = 0
    #: Succeeded ledger actions since midnight UTC (the policy's day), by action.
    actions_today: Mapping[str, int] = field(default_factory=dict)
    #: Retries that ran (succeeded or failed) per invoice.
    retries_by_invoice: Mapping[str, int] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.in_store or self.in_mirror

    @property
    def email(self) -> str | None:
        """The email on file: the subscription store's, else Stripe's."""
        return self.store_email or self.mirror_email

    def retry_attempts(self, invoice_id: str | None) -> int:
        return int(self.retries_by_invoice.get(invoice_id, 0)) if invoice_id else 0


# =============================================================================== the rules (one each)
def dispute_is_open(status: str | None) -> bool:
    return str(status or "") not in CLOSED_DISPUTE_STATUSES


def dispute_open(facts: CustomerFacts, diagnosis: DiagnosisView | None = None) -> bool:
    """An open dispute blocks financial actions (policy) and sends money asks to a person (router)."""
    if any(dispute_is_open(d.status) for d in facts.disputes):
        return True
    if diagnosis is None:
        return False
    if diagnosis.root_cause is RootCause.DISPUTE_OPEN or RootCause.DISPUTE_OPEN in diagnosis.secondary_causes:
        return True
    return any(dispute_is_open(d.get("status")) for d in diagnosis.evidence.get("disputes") or [])


def fraud_signal(facts: CustomerFacts, diagnosis: DiagnosisView | None = None) -> bool:
    """A fraud flag on the account, or a diagnosis that found a fraud decline."""
    return fraud_flagged(facts.risk_flags) or bool(diagnosis and diagnosis.root_cause in FRAUD_CAUSES)


def plan_of(facts: CustomerFacts, diagnosis: DiagnosisView | None = None) -> str | None:
    plan = (diagnosis.evidence.get("plan") or {}).get("tier") if diagnosis is not None else None
    return str(plan) if plan else facts.store_plan


# =============================================================================== the policy's context
def _iso(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def charge_facts(diagnosis: DiagnosisView, charge_id: str | None) -> ChargeFacts | None:
    """One charge of the diagnosis's evidence (Stripe's record) as the policy reads it."""
    for charge in diagnosis.evidence.get("charges") or []:
        if charge.get("id") == charge_id:
            return ChargeFacts(
                id=charge["id"],
                customer_id=diagnosis.customer_id,
                amount_usd=float(charge.get("amount_usd") or 0),
                created_at=_iso(charge.get("created_at")) or datetime.now(UTC),
                refunded_usd=float(charge.get("refunded_usd") or 0),
                status=str(charge.get("status") or "succeeded"),
            )
    return None


def refund_facts(facts: CustomerFacts, diagnosis: DiagnosisView | None = None) -> list[RefundFact]:
    """Every refund on record: the repository's (mirror + ledger) and the diagnosis's evidence (Stripe's
    record as diagnostics read it); the policy counts each id once."""
    found = list(facts.refunds)
    for refund in (diagnosis.evidence.get("refunds") or []) if diagnosis is not None else []:
        created = _iso(refund.get("created_at"))
        if refund.get("id") and created is not None:
            found.append(
                RefundFact(
                    id=str(refund["id"]),
                    charge_id=refund.get("charge_id"),
                    created_at=created,
                    status=str(refund.get("status") or "succeeded"),
                )
            )
    return found


def policy_context(
    engine: PolicyEngine,
    facts: CustomerFacts,
    diagnosis: DiagnosisView,
    *,
    actor: ActorKind,
    now: datetime,
    instruction_flag: bool = False,
    **extra: Any,
) -> PolicyContext:
    """The policy's verified facts for one decision, derived from the repository's facts and the diagnosis."""
    invoice = diagnosis.evidence.get("invoice") or {}
    charges = [
        c
        for c in (charge_facts(diagnosis, ch.get("id")) for ch in diagnosis.evidence.get("charges") or [])
        if c is not None
    ]
    refunds_in_window, last_refund_at = engine.refund_history(refund_facts(facts, diagnosis), charges, now)
    base: dict[str, Any] = {
        "actor": actor,
        "customer_id": facts.customer_id,
        "plan": plan_of(facts, diagnosis),
        "dispute_open": dispute_open(facts, diagnosis),
        "fraud_flag": fraud_signal(facts, diagnosis),
        "refunds_last_90d": refunds_in_window,
        "last_refund_at": last_refund_at,
        "decline_code": invoice.get("decline_code"),
        "failed_attempts": int(invoice.get("attempt_count") or 0),
        "retry_attempts": facts.retry_attempts(invoice.get("id")),
        "actions_today": dict(facts.actions_today),
        "instruction_flag": instruction_flag,
        "now": now,
    }
    base.update(extra)
    return PolicyContext(**base)


# =============================================================================== the repository
class FactsRepository(Protocol):
    async def load(
        self,
        customer_id: str,
        *,
        contact_id: str | None = None,
        refund_window_days: int = 90,
        repeat_window_days: int = REPEAT_WINDOW_DAYS,
    ) -> CustomerFacts: ...


class Fetcher(Protocol):
    """What :class:`PostgresFacts` needs of a pool (asyncpg's ``Pool`` or ``Connection``)."""

    async def fetchrow(self, query: str, *args: Any) -> Any: ...

    async def fetch(self, query: str, *args: Any) -> Any: ...


#: The columns of one customer's facts: ``:customer`` is its id, ``:other_contact`` the condition on a
#: contact ``k`` that makes it a repeat contact (not the one being handled).
FACTS_COLUMNS = """
  (SELECT row_to_json(c) FROM
     (SELECT email, plan_tier, risk_flags FROM customers WHERE id = :customer) c) AS store,
  (SELECT row_to_json(m) FROM (SELECT email FROM stripe_customers WHERE id = :customer) m) AS mirror,
  (SELECT coalesce(json_agg(json_build_object('id', d.id, 'status', d.status, 'charge_id', d.charge_id)),
                   '[]'::json)
     FROM stripe_disputes d WHERE d.customer_id = :customer) AS disputes,
  (SELECT coalesce(json_agg(json_build_object('id', r.id, 'charge_id', r.charge_id, 'status', r.status,
                                              'created_at', r.created)), '[]'::json)
     FROM stripe_refunds r
    WHERE r.customer_id = :customer AND r.created > now() - make_interval(days => $3)) AS mirror_refunds,
  (SELECT coalesce(json_agg(json_build_object('id', coalesce(l.result->>'refund', l.idempotency_key),
                                              'charge_id', l.target, 'created_at', l.created_at)),
                   '[]'::json)
     FROM action_ledger l
    WHERE l.customer_id = :customer AND l.action = 'refund' AND l.status = 'succeeded'
      AND l.created_at > now() - make_interval(days => $3)) AS ledger_refunds,
  (SELECT count(*) FROM contacts k
    WHERE k.customer_id = :customer AND :other_contact
      AND k.started_at > now() - make_interval(days => $4)) AS repeat_contacts,
  (SELECT coalesce(json_object_agg(t.action, t.n), '{}'::json) FROM
     (SELECT action, count(*) AS n FROM action_ledger WHERE customer_id = :customer AND status = 'succeeded'
         AND created_at >= date_trunc('day', now(), 'UTC')  -- the policy's day: calendar, UTC
       GROUP BY action) t) AS actions_today,
  (SELECT coalesce(json_object_agg(t.target, t.n), '{}'::json) FROM
     (SELECT target, count(*) AS n FROM action_ledger
       WHERE customer_id = :customer AND action = 'retry_payment'
         AND target IS NOT NULL AND status IN ('succeeded', 'failed')
       GROUP BY target) t) AS retries
"""


def _facts_columns(customer: str, other_contact: str) -> str:
    return FACTS_COLUMNS.replace(":customer", customer).replace(":other_contact", other_contact)


#: One customer: $1 customer id, $2 the contact being handled, $3 refund window, $4 repeat window (days).
FACTS_SQL = "SELECT" + _facts_columns("$1", "k.contact_id IS DISTINCT FROM $2")
#: Many customers in one statement: $1 their ids, $2 the contacts being handled (none of them counts as a
#: repeat contact), $3 and $4 the windows; one row per customer, named by ``customer_id``.
FACTS_MANY_SQL = (
    "SELECT q.customer_id,"
    + _facts_columns("q.customer_id", "k.contact_id <> ALL($2::text[])")
    + "FROM unnest($1::text[]) AS q(customer_id)"
)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _refund(raw: Mapping[str, Any], status: str = "succeeded") -> RefundFact | None:
    created = _iso(raw.get("created_at"))
    if not raw.get("id") or created is None:
        return None
    return RefundFact(
        id=str(raw["id"]),
        charge_id=raw.get("charge_id"),
        created_at=created,
        status=str(raw.get("status") or status),
    )


def facts_from_row(customer_id: str, row: Mapping[str, Any] | None) -> CustomerFacts:
    """The facts from one ``FACTS_SQL`` row (json columns as text or decoded)."""
    if row is None:
        return CustomerFacts(customer_id=customer_id)
    store: Mapping[str, Any] | None = _json(row["store"])
    mirror: Mapping[str, Any] | None = _json(row["mirror"])
    risk = _json((store or {}).get("risk_flags")) or {}
    raw_refunds = [*(_json(row["mirror_refunds"]) or []), *(_json(row["ledger_refunds"]) or [])]
    refunds = [fact for fact in map(_refund, raw_refunds) if fact is not None]
    return CustomerFacts(
        customer_id=customer_id,
        in_store=store is not None,
        in_mirror=mirror is not None,
        store_email=(store or {}).get("email"),
        mirror_email=(mirror or {}).get("email"),
        store_plan=(store or {}).get("plan_tier"),
        risk_flags=dict(risk) if isinstance(risk, Mapping) else {},
        disputes=tuple(
            DisputeFact(id=str(d["id"]), status=str(d.get("status") or ""), charge_id=d.get("charge_id"))
            for d in _json(row["disputes"]) or []
        ),
        refunds=tuple(refunds),
        repeat_contacts=int(row["repeat_contacts"] or 0),
        actions_today={str(k): int(v) for k, v in (_json(row["actions_today"]) or {}).items()},
        retries_by_invoice={str(k): int(v) for k, v in (_json(row["retries"]) or {}).items()},
    )


class PostgresFacts:
    """:class:`FactsRepository` on Postgres: one statement, one round trip."""

    def __init__(self, pool: Fetcher) -> None:
        self.pool = pool

    async def load(
        self,
        customer_id: str,
        *,
        contact_id: str | None = None,
        refund_window_days: int = 90,
        repeat_window_days: int = REPEAT_WINDOW_DAYS,
    ) -> CustomerFacts:
        row = await self.pool.fetchrow(
            FACTS_SQL, customer_id, contact_id, refund_window_days, repeat_window_days
        )
        return facts_from_row(customer_id, row)

    async def load_many(
        self,
        customer_ids: Sequence[str],
        *,
        contact_ids: Sequence[str] = (),
        refund_window_days: int = 90,
        repeat_window_days: int = REPEAT_WINDOW_DAYS,
    ) -> dict[str, CustomerFacts]:
        """The facts of many customers in one statement (a batch of contacts): ``contact_ids`` are the
        contacts being handled, none of which counts as a repeat contact."""
        wanted = list(dict.fromkeys(customer_ids))
        if not wanted:
            return {}
        rows = await self.pool.fetch(
            FACTS_MANY_SQL, wanted, list(contact_ids), refund_window_days, repeat_window_days
        )
        found = {row["customer_id"]: facts_from_row(row["customer_id"], row) for row in rows}
        return {c: found.get(c) or CustomerFacts(customer_id=c) for c in wanted}


@runtime_checkable
class BatchFactsRepository(FactsRepository, Protocol):
    """A :class:`FactsRepository` that also reads many customers in one round trip."""

    async def load_many(
        self,
        customer_ids: Sequence[str],
        *,
        contact_ids: Sequence[str] = (),
        refund_window_days: int = 90,
        repeat_window_days: int = REPEAT_WINDOW_DAYS,
    ) -> dict[str, CustomerFacts]: ...


async def load_many(
    repository: FactsRepository,
    customer_ids: Sequence[str],
    *,
    contact_ids: Sequence[str] = (),
    repeat_window_days: int = REPEAT_WINDOW_DAYS,
) -> dict[str, CustomerFacts]:
    """Many customers' facts: one read where the repository can, else one read each."""
    if isinstance(repository, BatchFactsRepository):
        return await repository.load_many(
            customer_ids, contact_ids=contact_ids, repeat_window_days=repeat_window_days
        )
    return {
        c: await repository.load(c, contact_id=None, repeat_window_days=repeat_window_days)
        for c in dict.fromkeys(customer_ids)
    }


class InMemoryFacts:
    """:class:`FactsRepository` from a dict (tests, tools): unknown customers have no facts."""

    def __init__(self, facts: Iterable[CustomerFacts] = ()) -> None:
        self.facts = {f.customer_id: f for f in facts}
        self.loads: list[str] = []

    async def load(
        self,
        customer_id: str,
        *,
        contact_id: str | None = None,
        refund_window_days: int = 90,
        repeat_window_days: int = REPEAT_WINDOW_DAYS,
    ) -> CustomerFacts:
        self.loads.append(customer_id)
        return self.facts.get(customer_id) or CustomerFacts(customer_id=customer_id)
