"""The reference product's Postgres tables (migration 087_product.sql): one function per operation,
each on a connection inside the caller's transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.product.domain import (
    INVITE_TTL_S,
    KEY_PREFIX,
    MANAGERS,
    Conflict,
    Invalid,
    NotFound,
    ProductForbidden,
    Role,
    hash_secret,
    masked,
    new_invite_token,
    new_key,
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _member(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "email": row["email"],
        "role": row["role"],
        "status": row["status"],
        "invite_expires_at": _iso(row["invite_expires_at"]),
        "invited_by": row["invited_by"],
    }


def _key(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    expired = row["expires_at"] is not None and row["expires_at"] <= now
    return {
        "key_id": row["key_id"],
        "name": row["name"],
        "display": masked(row["prefix"], row["last4"]),
        "last4": row["last4"],
        "scopes": list(row["scopes"]),
        "created_by": row["created_by"],
        "created_at": _iso(row["created_at"]),
        "expires_at": _iso(row["expires_at"]),
        "revoked_at": _iso(row["revoked_at"]),
        "replaced_by": row["replaced_by"],
        "active": row["revoked_at"] is None and not expired,
    }


async def account(conn: asyncpg.Connection | asyncpg.Pool, account_id: str) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT * FROM product_accounts WHERE account_id=$1", account_id)
    if row is None:
        raise NotFound(f"no account {account_id}")
    return {"account_id": row["account_id"], "name": row["name"], "email": row["email"]}


async def create_account(
    conn: asyncpg.Connection, account_id: str, name: str, owner_email: str
) -> dict[str, Any]:
    await conn.execute(
        """INSERT INTO product_accounts (account_id, name, email) VALUES ($1,$2,$3)
           ON CONFLICT (account_id) DO NOTHING""",
        account_id,
        name,
        owner_email,
    )
    await conn.execute(
        """INSERT INTO product_members (account_id, email, role, status)
           SELECT $1, $2, 'owner', 'active'
           WHERE NOT EXISTS (SELECT 1 FROM product_members WHERE account_id=$1 AND role='owner'
                             AND status='active')
           ON CONFLICT (account_id, email) DO NOTHING""",
        account_id,
        owner_email,
    )
    return await account(conn, account_id)


async def update_profile(
    conn: asyncpg.Connection, account_id: str, *, name: str | None, email: str | None
) -> dict[str, Any]:
    await account(conn, account_id)
    await conn.execute(
        """UPDATE product_accounts SET name=coalesce($2, name), email=coalesce($3, email), updated_at=now()
           WHERE account_id=$1""",
        account_id,
        name,
        email,
    )
    return await account(conn, account_id)


async def members(conn: asyncpg.Connection | asyncpg.Pool, account_id: str) -> list[dict[str, Any]]:
    await account(conn, account_id)
    rows = await conn.fetch(
        """SELECT * FROM product_members WHERE account_id=$1 AND status <> 'removed'
           ORDER BY CASE role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, email""",
        account_id,
    )
    return [_member(r) for r in rows]


async def _active_role(conn: asyncpg.Connection, account_id: str, email: str) -> str | None:
    role: str | None = await conn.fetchval(
        "SELECT role FROM product_members WHERE account_id=$1 AND email=$2 AND status='active'",
        account_id,
        email,
    )
    return role


async def require_manager(conn: asyncpg.Connection, account_id: str, actor: str | None) -> None:
    """When the caller names the person acting (``X-Acting-User``), that person manages the account."""
    if actor is None:
        return
    role = await _active_role(conn, account_id, actor)
    if role not in MANAGERS:
        raise ProductForbidden(f"{actor} is {role or 'not a member'}; only an owner or admin may do this")


async def invite(
    conn: asyncpg.Connection, account_id: str, email: str, role: Role, invited_by: str | None
) -> dict[str, Any]:
    await account(conn, account_id)
    current = await conn.fetchrow(
        "SELECT * FROM product_members WHERE account_id=$1 AND email=$2", account_id, email
    )
    if current is not None and current["status"] == "active":
        raise Conflict(f"{email} is already a member ({current['role']})")
    token = new_invite_token()
    expires = datetime.now(UTC) + timedelta(seconds=INVITE_TTL_S)
    row = await conn.fetchrow(
        """INSERT INTO product_members (account_id, email, role, status, invite_token_hash, invite_expires_at,
               invited_by)
           VALUES ($1,$2,$3,'invited',$4,$5,$6)
           ON CONFLICT (account_id, email) DO UPDATE SET role=EXCLUDED.role, status='invited',
               invite_token_hash=EXCLUDED.invite_token_hash, invite_expires_at=EXCLUDED.invite_expires_at,
               invited_by=EXCLUDED.invited_by, updated_at=now()
           RETURNING *""",
        account_id,
        email,
        role,
        hash_secret(token),
        expires,
        invited_by,
    )
    return {**_member(row), "invite_token": token}


async def accept_invite(conn: asyncpg.Connection, token: str) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT * FROM product_members WHERE invite_token_hash=$1 AND status='invited'", hash_secret(token)
    )
    if row is None:
        raise NotFound("no such invitation")
    if row["invite_expires_at"] is not None and row["invite_expires_at"] <= datetime.now(UTC):
        raise Invalid("the invitation expired; ask for a new one")
    row = await conn.fetchrow(
        """UPDATE product_members SET status='active', invite_token_hash=NULL, invite_expires_at=NULL,
               updated_at=now() WHERE account_id=$1 AND email=$2 RETURNING *""",
        row["account_id"],
        row["email"],
    )
    return {"account_id": row["account_id"], **_member(row)}


async def _member_row(conn: asyncpg.Connection, account_id: str, email: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM product_members WHERE account_id=$1 AND email=$2 AND status <> 'removed'",
        account_id,
        email,
    )
    if row is None:
        raise NotFound(f"{email} is not a member of {account_id}")
    return row


async def remove_member(conn: asyncpg.Connection, account_id: str, email: str) -> dict[str, Any]:
    """Remove a member (or withdraw an invitation) and revoke every key that person created."""
    row = await _member_row(conn, account_id, email)
    if row["role"] == "owner":
        raise Conflict("the owner cannot be removed; transfer ownership first")
    await conn.execute(
        """UPDATE product_members SET status='removed', invite_token_hash=NULL, updated_at=now()
           WHERE account_id=$1 AND email=$2""",
        account_id,
        email,
    )
    revoked = await conn.fetch(
        """UPDATE product_api_keys SET revoked_at=now()
           WHERE account_id=$1 AND created_by=$2 AND revoked_at IS NULL RETURNING key_id""",
        account_id,
        email,
    )
    return {"email": email, "status": "removed", "revoked_keys": [r["key_id"] for r in revoked]}


async def change_role(conn: asyncpg.Connection, account_id: str, email: str, role: Role) -> dict[str, Any]:
    row = await _member_row(conn, account_id, email)
    if row["role"] == "owner":
        raise Conflict("the owner's role changes only by transferring ownership")
    row = await conn.fetchrow(
        """UPDATE product_members SET role=$3, updated_at=now() WHERE account_id=$1 AND email=$2
           RETURNING *""",
        account_id,
        email,
        role,
    )
    return _member(row)


async def transfer_ownership(conn: asyncpg.Connection, account_id: str, email: str) -> dict[str, Any]:
    row = await _member_row(conn, account_id, email)
    if row["status"] != "active":
        raise Conflict(f"{email} has not accepted the invitation yet")
    if row["role"] == "owner":
        return {"owner": email, "previous_owner": email}
    previous = await conn.fetchval(
        "SELECT email FROM product_members WHERE account_id=$1 AND role='owner' AND status='active'",
        account_id,
    )
    await conn.execute(
        """UPDATE product_members SET role='admin', updated_at=now()
           WHERE account_id=$1 AND role='owner' AND status='active'""",
        account_id,
    )
    await conn.execute(
        "UPDATE product_members SET role='owner', updated_at=now() WHERE account_id=$1 AND email=$2",
        account_id,
        email,
    )
    return {"owner": email, "previous_owner": previous}


async def keys(conn: asyncpg.Connection | asyncpg.Pool, account_id: str) -> list[dict[str, Any]]:
    await account(conn, account_id)
    now = datetime.now(UTC)
    rows = await conn.fetch(
        "SELECT * FROM product_api_keys WHERE account_id=$1 ORDER BY created_at, key_id", account_id
    )
    return [_key(r, now) for r in rows]


async def _insert_key(
    conn: asyncpg.Connection, account_id: str, name: str, scopes: list[str], created_by: str | None
) -> dict[str, Any]:
    key = new_key()
    row = await conn.fetchrow(
        """INSERT INTO product_api_keys (key_id, account_id, name, prefix, last4, secret_hash, scopes,
               created_by) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) RETURNING *""",
        key.key_id,
        account_id,
        name,
        KEY_PREFIX,
        key.last4,
        key.secret_hash,
        scopes,
        created_by,
    )
    return {**_key(row, datetime.now(UTC)), "secret": key.secret}


async def create_key(
    conn: asyncpg.Connection, account_id: str, name: str, scopes: list[str], created_by: str | None
) -> dict[str, Any]:
    await account(conn, account_id)
    return await _insert_key(conn, account_id, name, scopes, created_by)


async def _live_key(conn: asyncpg.Connection, account_id: str, ref: str) -> asyncpg.Record:
    """A key that still works, by id or by its last four characters (exactly one must match)."""
    rows = await conn.fetch(
        """SELECT * FROM product_api_keys WHERE account_id=$1 AND (key_id=$2 OR last4=$2)
             AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())""",
        account_id,
        ref,
    )
    if not rows:
        raise NotFound(f"no active key {ref} on {account_id}")
    if len(rows) > 1:
        raise Conflict(f"{len(rows)} active keys end in {ref}; name the key id")
    return rows[0]


async def rotate_key(conn: asyncpg.Connection, account_id: str, ref: str, overlap_s: int) -> dict[str, Any]:
    """A new key with the same name and scopes; the old one keeps working ``overlap_s`` seconds
    (0: revoked at once)."""
    old = await _live_key(conn, account_id, ref)
    fresh = await _insert_key(conn, account_id, old["name"], list(old["scopes"]), old["created_by"])
    if overlap_s == 0:
        await conn.execute(
            "UPDATE product_api_keys SET revoked_at=now(), replaced_by=$2 WHERE key_id=$1",
            old["key_id"],
            fresh["key_id"],
        )
    else:
        await conn.execute(
            """UPDATE product_api_keys SET expires_at=now() + make_interval(secs => $2), replaced_by=$3
               WHERE key_id=$1""",
            old["key_id"],
            float(overlap_s),
            fresh["key_id"],
        )
    old_status = (
        "stopped working at once"
        if overlap_s == 0
        else f"keeps working for {overlap_s // 3600} hours"
        if overlap_s % 3600 == 0
        else f"keeps working for {overlap_s} seconds"
    )
    return {
        **fresh,
        "replaces": old["key_id"],
        "replaced_display": masked(old["prefix"], old["last4"]),
        "old_key_works_for_s": overlap_s,
        "old_key_status": old_status,
    }


async def revoke_key(conn: asyncpg.Connection, account_id: str, ref: str) -> dict[str, Any]:
    old = await _live_key(conn, account_id, ref)
    await conn.execute("UPDATE product_api_keys SET revoked_at=now() WHERE key_id=$1", old["key_id"])
    return {"key_id": old["key_id"], "revoked": True}


async def verify_key(conn: asyncpg.Pool, secret: str) -> dict[str, Any]:
    row = await conn.fetchrow(
        """SELECT * FROM product_api_keys WHERE secret_hash=$1 AND revoked_at IS NULL
             AND (expires_at IS NULL OR expires_at > now())""",
        hash_secret(secret),
    )
    if row is None:
        return {"valid": False}
    return {
        "valid": True,
        "account_id": row["account_id"],
        "key_id": row["key_id"],
        "scopes": list(row["scopes"]),
    }
