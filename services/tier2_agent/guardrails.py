"""Tier 2's guardrails are the shared ones: every tier checks text with the same detector
(:mod:`tierline.guardrails`); this module stays so existing imports keep working."""

from __future__ import annotations

from tierline.guardrails import (
    INJECTION_FLAG,
    InjectionCategory,
    InjectionFinding,
    detect_injection,
    injection_flags,
    redact,
)

__all__ = [
    "INJECTION_FLAG",
    "InjectionCategory",
    "InjectionFinding",
    "detect_injection",
    "injection_flags",
    "redact",
]
