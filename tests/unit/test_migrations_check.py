"""The migration check itself: which applied versions no longer match their files."""

from __future__ import annotations

import pytest

from tierline.db import changed_migrations, checksum

pytestmark = pytest.mark.unit


def test_given_applied_checksums_when_compared_then_only_edited_applied_files_are_named() -> None:
    files = [("001_core", "CREATE TABLE a ();"), ("010_x", "CREATE TABLE b ();"), ("020_new", "SELECT 1;")]
    applied = {"001_core": checksum("CREATE TABLE a ();"), "010_x": checksum("CREATE TABLE b (c int);")}
    changed = changed_migrations(applied, files)
    assert len(changed) == 1
    assert changed[0].startswith("010_x (applied ")
    assert changed_migrations({}, files) == []
