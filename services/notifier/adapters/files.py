"""Attachments kept with the case, by content hash under the data directory; never opened or parsed."""

from __future__ import annotations

import os
from pathlib import Path

from services.notifier.domain import Attachment


class FileAttachmentStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.root = data_dir / "attachments"

    def keep(self, attachment: Attachment) -> str:
        digest = attachment.sha256
        relative = Path("attachments") / digest[:2] / digest
        path = self.data_dir / relative
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(attachment.data)
            tmp.chmod(0o600)
            tmp.replace(path)
        return str(relative)
