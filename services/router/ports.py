"""What the router needs from outside."""

from __future__ import annotations

from typing import Protocol

from schemas.messages import DiagnosisView


class Classifier(Protocol):
    threshold: float

    def predict(self, texts: list[str]) -> list[object]: ...


class Diagnostics(Protocol):
    async def diagnose(self, customer_id: str, *, contact_id: str | None = None) -> DiagnosisView: ...
