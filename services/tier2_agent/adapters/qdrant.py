"""Knowledge store: KCS articles chunked into passages, embedded offline, searched in Qdrant.

Embedded default: qdrant-client *local mode* (``QdrantClient(path=...)``) — one process owns a path, so the
Tier 2 service owns the store and everyone else publishes ``knowledge.article.published.v1``. Production:
the same class on a Qdrant server (:meth:`KnowledgeStore.connect`).

Points have deterministic ids (``uuid5(article_id, chunk index)``); every passage carries the article's
content hash, so re-publishing an article upserts its new passages and then deletes those of older
versions — the article stays searchable throughout. The client is synchronous; the ``a*`` methods run the
same calls in a worker thread (``asyncio.to_thread``) behind one lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field
from qdrant_client import QdrantClient
from qdrant_client.http import models as qm

from tierline.embeddings import DIM, EncoderVariant, embed

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

log = structlog.get_logger(__name__)

Embedder = Callable[[list[str]], "npt.NDArray[np.float32]"]

DEFAULT_COLLECTION = "kcs_passages"
SHIPPED_ARTICLES = Path(__file__).resolve().parent.parent / "knowledge"
# bump when chunking or the embedded text changes: every article is then re-indexed on next load
CHUNKER_VERSION = "1"
# Passages and queries are embedded with int8 weights (about 1.7x faster than float32 for a query, cosine
# 0.996 to the float32 vector); the variant is part of each article's content hash, so a collection
# indexed with another variant is re-indexed on the next load instead of being searched with mixed vectors.
KNOWLEDGE_ENCODER = EncoderVariant("int8", 256)
_POINT_NAMESPACE = uuid.UUID("6a0f6c1e-3b0e-5d4c-9a51-7c1b0e2f4d10")
_MAX_PASSAGE_CHARS = 900
_MIN_PASSAGE_CHARS = 160
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


class KnowledgeStoreError(Exception):
    """An article could not be parsed or indexed."""


class Article(BaseModel):
    model_config = ConfigDict(frozen=True)
    article_id: str
    title: str
    body_markdown: str
    tags: list[str] = Field(default_factory=list)
    source: str = "shipped"


class Passage(BaseModel):
    model_config = ConfigDict(frozen=True)
    article_id: str
    title: str
    text: str
    score: float
    source: str
    heading: str = ""
    chunk: int = 0


class LoadReport(BaseModel):
    indexed: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- parsing and chunking (pure)
def parse_article(text: str, *, source: str = "shipped", fallback_id: str | None = None) -> Article:
    """Split ``---`` front matter (id, title, tags) from the Markdown body."""
    meta: dict[str, Any] = {}
    body = text
    match = _FRONT_MATTER.match(text)
    if match:
        try:
            loaded = yaml.safe_load(match.group(1))
        except yaml.YAMLError as exc:
            raise KnowledgeStoreError(f"bad front matter: {exc}") from exc
        if isinstance(loaded, dict):
            meta = loaded
        body = text[match.end() :]
    article_id = str(meta.get("id") or fallback_id or "").strip()
    if not article_id:
        raise KnowledgeStoreError("article has no id")
    title = str(meta.get("title") or "").strip()
    if not title:
        first_heading = next((m.group(2) for m in map(_HEADING.match, body.splitlines()) if m), None)
        title = first_heading or article_id
    raw_tags = meta.get("tags") or []
    tags = [str(t) for t in raw_tags] if isinstance(raw_tags, list) else [str(raw_tags)]
    return Article(article_id=article_id, title=title, body_markdown=body.strip(), tags=tags, source=source)


def _split_long(paragraphs: list[str]) -> list[str]:
    """Group paragraphs into pieces of at most ``_MAX_PASSAGE_CHARS`` (one long paragraph stays whole)."""
    pieces: list[str] = []
    current = ""
    for paragraph in paragraphs:
        candidate = f"{current}\n\n{paragraph}" if current else paragraph
        if current and len(candidate) > _MAX_PASSAGE_CHARS:
            pieces.append(current)
            current = paragraph
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces


def chunk_markdown(title: str, body: str) -> list[tuple[str, str]]:
    """Passages as (heading, text): one per section, long sections split by paragraph, tiny ones merged.

    The top-level ``# Title`` heading is dropped (the title travels separately).
    """
    sections: list[tuple[str, list[str]]] = [("", [])]
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            sections[-1][1].append("\n".join(paragraph).strip())
            paragraph.clear()

    for line in body.splitlines():
        heading_match = _HEADING.match(line)
        if heading_match:
            flush()
            level, text = len(heading_match.group(1)), heading_match.group(2)
            if level == 1 and text.strip().lower() == title.strip().lower():
                continue
            sections.append((text, []))
        elif not line.strip():
            flush()
        else:
            paragraph.append(line.rstrip())
    flush()

    passages: list[tuple[str, str]] = []
    for heading, paragraphs in sections:
        paragraphs = [p for p in paragraphs if p]
        if not paragraphs:
            continue
        for piece in _split_long(paragraphs):
            if passages and len(piece) < _MIN_PASSAGE_CHARS and passages[-1][0] == heading:
                passages[-1] = (heading, f"{passages[-1][1]}\n\n{piece}")
            else:
                passages.append((heading, piece))
    # a very short section joins the one before it, so no passage is a lone sentence without context
    merged: list[tuple[str, str]] = []
    for heading, text in passages:
        if merged and len(text) < _MIN_PASSAGE_CHARS // 2:
            prev_heading, prev_text = merged[-1]
            merged[-1] = (
                prev_heading,
                f"{prev_text}\n\n{heading}\n{text}" if heading else f"{prev_text}\n\n{text}",
            )
        else:
            merged.append((heading, text))
    return merged


def embed_knowledge(texts: list[str]) -> npt.NDArray[np.float32]:
    """Passage and query vectors, in ``KNOWLEDGE_ENCODER``."""
    return embed(texts, variant=KNOWLEDGE_ENCODER)


def content_hash(article: Article) -> str:
    digest = hashlib.sha256()
    for part in (
        CHUNKER_VERSION,
        KNOWLEDGE_ENCODER.id,
        article.article_id,
        article.title,
        "\x1f".join(article.tags),
        article.source,
    ):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1e")
    digest.update(article.body_markdown.encode("utf-8"))
    return digest.hexdigest()


def point_id(article_id: str, chunk: int) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{article_id}#{chunk}"))


def _embedding_text(title: str, heading: str, text: str, tags: Sequence[str]) -> str:
    context = f"{title} — {heading}" if heading else title
    tag_line = f"\nTopics: {', '.join(tags)}" if tags else ""
    return f"{context}\n{text}{tag_line}"


# --------------------------------------------------------------------------- the store
class KnowledgeStore:
    """Passages of KCS articles in one Qdrant collection of ``DIM``-d cosine vectors."""

    def __init__(
        self,
        client: QdrantClient,
        *,
        collection: str = DEFAULT_COLLECTION,
        embedder: Embedder = embed_knowledge,
        payload_indexes: bool = False,
    ) -> None:
        self._client = client
        self._collection = collection
        self._embed = embedder
        self._lock = threading.RLock()
        self._ensure_collection(payload_indexes=payload_indexes)

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(cls, path: Path | str, *, collection: str = DEFAULT_COLLECTION) -> KnowledgeStore:
        """Local mode on an on-disk path (one owning process per path)."""
        Path(path).mkdir(parents=True, exist_ok=True)
        return cls(QdrantClient(path=str(path)), collection=collection)

    @classmethod
    def connect(
        cls, url: str, *, api_key: str | None = None, collection: str = DEFAULT_COLLECTION
    ) -> KnowledgeStore:
        """A Qdrant server (production)."""
        return cls(QdrantClient(url=url, api_key=api_key), collection=collection, payload_indexes=True)

    @property
    def collection(self) -> str:
        return self._collection

    def close(self) -> None:
        with self._lock:
            self._client.close()

    def _ensure_collection(self, *, payload_indexes: bool) -> None:
        with self._lock:
            if self._client.collection_exists(self._collection):
                return
            self._client.create_collection(
                self._collection,
                vectors_config=qm.VectorParams(size=DIM, distance=qm.Distance.COSINE),
            )
            if payload_indexes:  # a server only: local mode ignores payload indexes
                for field in ("article_id", "article_hash"):
                    self._client.create_payload_index(self._collection, field, qm.PayloadSchemaType.KEYWORD)
            log.info("tier2.knowledge.collection_created", collection=self._collection, dim=DIM)

    # ------------------------------------------------------------------ writes
    def index_article(
        self,
        article_id: str,
        title: str,
        body_markdown: str,
        tags: Sequence[str] = (),
        source: str = "tier3",
    ) -> int:
        """Index (or re-index) one article; returns the number of passages now stored for it."""
        article = Article(
            article_id=article_id, title=title, body_markdown=body_markdown, tags=list(tags), source=source
        )
        return self._index(article, content_hash(article))

    def _index(self, article: Article, article_hash: str) -> int:
        chunks = chunk_markdown(article.title, article.body_markdown)
        if not chunks:
            chunks = [("", article.title)]
        vectors = self._embed([_embedding_text(article.title, h, t, article.tags) for h, t in chunks])
        points = [
            qm.PointStruct(
                id=point_id(article.article_id, index),
                vector=vectors[index].tolist(),
                payload={
                    "article_id": article.article_id,
                    "article_hash": article_hash,
                    "title": article.title,
                    "heading": heading,
                    "text": text,
                    "tags": article.tags,
                    "source": article.source,
                    "chunk": index,
                },
            )
            for index, (heading, text) in enumerate(chunks)
        ]
        stale = qm.Filter(
            must=[qm.FieldCondition(key="article_id", match=qm.MatchValue(value=article.article_id))],
            must_not=[qm.FieldCondition(key="article_hash", match=qm.MatchValue(value=article_hash))],
        )
        with self._lock:
            self._client.upsert(self._collection, points=points, wait=True)
            self._client.delete(self._collection, points_selector=qm.FilterSelector(filter=stale), wait=True)
        log.info(
            "tier2.knowledge.article_indexed",
            article_id=article.article_id,
            passages=len(points),
            source=article.source,
        )
        return len(points)

    def delete_article(self, article_id: str) -> None:
        selector = qm.FilterSelector(
            filter=qm.Filter(
                must=[qm.FieldCondition(key="article_id", match=qm.MatchValue(value=article_id))]
            )
        )
        with self._lock:
            self._client.delete(self._collection, points_selector=selector, wait=True)
        log.info("tier2.knowledge.article_deleted", article_id=article_id)

    def stored_hash(self, article_id: str) -> str | None:
        """The content hash of the stored version of ``article_id`` (None if absent)."""
        only = qm.Filter(must=[qm.FieldCondition(key="article_id", match=qm.MatchValue(value=article_id))])
        with self._lock:
            records, _ = self._client.scroll(
                self._collection,
                scroll_filter=only,
                limit=1,
                with_payload=["article_hash"],
                with_vectors=False,
            )
        if not records or records[0].payload is None:
            return None
        value = records[0].payload.get("article_hash")
        return str(value) if value is not None else None

    def load_directory(self, path: Path | str | None = None, *, source: str = "shipped") -> LoadReport:
        """Index every ``*.md`` article under ``path`` (default: the shipped ones); skip unchanged ones."""
        directory = Path(path) if path is not None else SHIPPED_ARTICLES
        report = LoadReport()
        for file in sorted(directory.glob("*.md")):
            article = parse_article(file.read_text(encoding="utf-8"), source=source, fallback_id=file.stem)
            article_hash = content_hash(article)
            if self.stored_hash(article.article_id) == article_hash:
                report.unchanged.append(article.article_id)
                continue
            self._index(article, article_hash)
            report.indexed.append(article.article_id)
        log.info(
            "tier2.knowledge.directory_loaded",
            directory=str(directory),
            indexed=len(report.indexed),
            unchanged=len(report.unchanged),
        )
        return report

    # ------------------------------------------------------------------ reads
    def search(self, query: str, limit: int = 4) -> list[Passage]:
        """The ``limit`` passages closest to ``query`` (cosine similarity, best first)."""
        if not query.strip() or limit <= 0:
            return []
        vector = self._embed([query])[0].tolist()
        with self._lock:
            response = self._client.query_points(
                self._collection, query=vector, limit=limit, with_payload=True, with_vectors=False
            )
        passages: list[Passage] = []
        for point in response.points:
            payload = point.payload or {}
            passages.append(
                Passage(
                    article_id=str(payload.get("article_id", "")),
                    title=str(payload.get("title", "")),
                    text=str(payload.get("text", "")),
                    score=float(point.score),
                    source=str(payload.get("source", "")),
                    heading=str(payload.get("heading", "")),
                    chunk=int(payload.get("chunk", 0)),
                )
            )
        return passages

    def count(self) -> int:
        with self._lock:
            return self._client.count(self._collection, exact=True).count

    # ------------------------------------------------------------------ async wrappers
    async def aindex_article(
        self, article_id: str, title: str, body_markdown: str, tags: Sequence[str] = (), source: str = "tier3"
    ) -> int:
        return await asyncio.to_thread(self.index_article, article_id, title, body_markdown, tags, source)

    async def aload_directory(self, path: Path | str | None = None, *, source: str = "shipped") -> LoadReport:
        return await asyncio.to_thread(self.load_directory, path, source=source)

    async def asearch(self, query: str, limit: int = 4) -> list[Passage]:
        return await asyncio.to_thread(self.search, query, limit)

    async def adelete_article(self, article_id: str) -> None:
        await asyncio.to_thread(self.delete_article, article_id)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
