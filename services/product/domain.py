"""Pure rules of the reference product: roles, who may do what, key secrets and their display."""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass
from typing import Literal

Role = Literal["owner", "admin", "member", "billing"]
ROLES: tuple[Role, ...] = ("owner", "admin", "member", "billing")
#: Roles that manage the team and the API keys.
MANAGERS: frozenset[str] = frozenset({"owner", "admin"})
#: Scopes an API key may carry.
SCOPES: frozenset[str] = frozenset({"read", "write", "billing", "admin"})
KEY_PREFIX = "sk_live_"
INVITE_TTL_S = 7 * 24 * 3600
#: How long a rotated key keeps working beside its successor unless the caller says otherwise.
DEFAULT_ROTATION_OVERLAP_S = 24 * 3600
MAX_ROTATION_OVERLAP_S = 30 * 24 * 3600

_KEY_ALPHABET = string.ascii_letters + string.digits
_EMAIL = re.compile(r"^[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9.\-]{1,190}\.[A-Za-z]{2,24}$")


class ProductError(Exception):
    """A request the product refuses: ``status`` is the HTTP status, ``code`` a stable name."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ProductError):
    status = 404
    code = "not_found"


class Conflict(ProductError):
    status = 409
    code = "conflict"


class ProductForbidden(ProductError):
    status = 403
    code = "forbidden"


class Invalid(ProductError):
    status = 422
    code = "invalid"


def normalize_email(value: object) -> str:
    email = str(value or "").strip().lower()
    if not _EMAIL.match(email):
        raise Invalid(f"not an email address: {str(value)[:80]!r}")
    return email


def parse_role(value: object, *, allow_owner: bool = False) -> Role:
    role = str(value or "").strip().lower()
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}")
    if role == "owner" and not allow_owner:
        raise Invalid("ownership is transferred, never granted by an invite or a role change")
    return role  # type: ignore[return-value]


def parse_scopes(value: object) -> list[str]:
    scopes = sorted({str(s).strip().lower() for s in (value or ["read"])})  # type: ignore[attr-defined]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise Invalid(f"unknown scopes {unknown}; choose from {', '.join(sorted(SCOPES))}")
    return scopes


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewKey:
    key_id: str
    secret: str  # shown once

    @property
    def last4(self) -> str:
        return self.secret[-4:]

    @property
    def secret_hash(self) -> str:
        return hash_secret(self.secret)


def new_key() -> NewKey:
    body = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(32))  # letters and digits: quotable
    return NewKey(key_id=f"key_{secrets.token_hex(8)}", secret=KEY_PREFIX + body)


def new_invite_token() -> str:
    return f"inv_{secrets.token_urlsafe(24)}"


def masked(prefix: str, last4: str) -> str:
    """How a key is shown after creation: ``sk_live_…abcd``."""
    return f"{prefix}…{last4}"


def last4_from_hint(hint: object) -> str:
    """The last four characters of a key a customer quoted (``sk_live_…abcd``, ``...abcd``, ``abcd``)."""
    text = str(hint or "").strip()
    tail = re.findall(r"[A-Za-z0-9_\-]{4}$", text)
    if not tail:
        raise Invalid("name the key by its last four characters")
    return tail[0]


def overlap_seconds(value: object) -> int:
    try:
        seconds = int(value if value is not None else DEFAULT_ROTATION_OVERLAP_S)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise Invalid("overlap_s must be a whole number of seconds") from exc
    if not 0 <= seconds <= MAX_ROTATION_OVERLAP_S:
        raise Invalid(f"overlap_s must be between 0 and {MAX_ROTATION_OVERLAP_S}")
    return seconds
