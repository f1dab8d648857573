"""Answer template experiments (issue 19's learning loop): an A/B test of one answer's wording.

An experiment names an answer template (the texts it replaces: the template's own wording and any other
text the same answer is said with today) and its variants, the first the control. When the
experiment is on (``TIERLINE_EXPERIMENTS=update_card_link_answer``; off by default), each customer gets
one variant for good, by a stable hash of experiment and customer id, so the same customer always reads
the same wording and the split does not move between processes or restarts. The variant is recorded with
the answer turn (``conversation.message.sent.v1``) and the outcome (``contact.outcome.recorded.v1``) as
``<experiment>:<variant>``; `tierline report` compares CSAT and resolution per variant.

Pure: no broker, no database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Experiment:
    """``variants``: (name, text) pairs; the first one is the control (the template's own wording).
    ``also_replaces``: other texts the same answer is said with today (e.g. the action executor's own
    message for the action), which the experiment replaces as well."""

    name: str
    variants: tuple[tuple[str, str], ...]
    also_replaces: tuple[str, ...] = ()

    @property
    def control(self) -> str:
        return self.variants[0][1]

    def replaced_prefix(self, answer: str) -> str | None:
        """The text of ``answer`` this experiment replaces (the whole answer, or its first sentence(s)
        when further sentences follow), or None."""
        for text in (self.control, *self.also_replaces):
            if answer == text or answer.startswith(text + " "):
                return text
        return None

    def variant_for(self, customer_id: str) -> tuple[str, str]:
        """The (variant name, text) this customer gets: the same for every call, process and restart."""
        digest = hashlib.sha256(f"{self.name}\x00{customer_id}".encode()).digest()
        return self.variants[int.from_bytes(digest[:8], "big") % len(self.variants)]


#: Tier 2's answer after it emailed a link to update the card (the planner says the control).
UPDATE_CARD_LINK_ANSWER = Experiment(
    name="update_card_link_answer",
    variants=(
        (
            "A",
            "I've emailed you a secure link to update your card; we retry the open invoice once it's saved.",
        ),
        (
            "B",
            "Check your inbox: we've sent a secure link to update your card. As soon as the new card is "
            "saved, we retry the open invoice for you, with nothing else to do on your side.",
        ),
    ),
    also_replaces=("An update-card link was sent.",),  # the action executor's own message
)

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (UPDATE_CARD_LINK_ANSWER,)}


class UnknownExperiment(ValueError):
    """The setting names an experiment this code does not have."""


def parse_experiments(setting: str | Iterable[str] | None) -> tuple[Experiment, ...]:
    """The experiments a setting turns on: comma-separated names, empty (the default) for none."""
    names = setting.split(",") if isinstance(setting, str) else list(setting or [])
    chosen: list[Experiment] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name not in EXPERIMENTS:
            raise UnknownExperiment(f"unknown experiment {name!r}; known: {', '.join(sorted(EXPERIMENTS))}")
        if EXPERIMENTS[name] not in chosen:
            chosen.append(EXPERIMENTS[name])
    return tuple(chosen)


def choose_answer(experiments: Iterable[Experiment], customer_id: str, answer: str) -> tuple[str, str | None]:
    """The answer this customer reads and its variant label (``<experiment>:<variant>``), or the answer
    as it is and None when no running experiment has it as its control text (another answer, or one
    already translated)."""
    for experiment in experiments:
        replaced = experiment.replaced_prefix(answer)
        if replaced is not None:
            name, text = experiment.variant_for(customer_id)
            return text + answer[len(replaced) :], f"{experiment.name}:{name}"
    return answer, None
