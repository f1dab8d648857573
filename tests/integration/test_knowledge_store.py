"""The knowledge store on real Qdrant local mode with the real offline embeddings (Given / When / Then)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.tier2_agent.adapters.qdrant import (
    SHIPPED_ARTICLES,
    KnowledgeStore,
    chunk_markdown,
    parse_article,
    point_id,
)

pytestmark = pytest.mark.integration

SHIPPED_IDS = sorted(parse_article(p.read_text()).article_id for p in SHIPPED_ARTICLES.glob("*.md"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeStore]:
    knowledge = KnowledgeStore.open(tmp_path_factory.mktemp("qdrant-kcs"))
    report = knowledge.load_directory()
    assert sorted(report.indexed) == SHIPPED_IDS
    yield knowledge
    knowledge.close()


def _article_passages(store: KnowledgeStore, article_id: str, query: str) -> list[str]:
    return [p.text for p in store.search(query, limit=100) if p.article_id == article_id]


# --------------------------------------------------------------------------- shipped content
def test_given_shipped_articles_then_each_has_front_matter_and_several_passages() -> None:
    assert len(SHIPPED_IDS) >= 12
    for path in SHIPPED_ARTICLES.glob("*.md"):
        article = parse_article(path.read_text())
        assert article.title, path.name
        assert article.tags, path.name
        chunks = chunk_markdown(article.title, article.body_markdown)
        assert len(chunks) >= 3, path.name
        assert all(40 <= len(text) <= 1200 for _, text in chunks), path.name


def test_given_a_markdown_article_when_chunked_then_split_by_heading_and_title_dropped() -> None:
    body = (
        "# Refund timing\n\nIntro paragraph that explains the article in enough words to stand alone "
        "as a passage for the reader and the search index.\n\n## Cards\n\nCard refunds take five to ten "
        "business days to show on the statement, depending on the issuing bank.\n\n## Debits\n\nSEPA and "
        "ACH debit refunds take up to five business days to arrive back in the account."
    )
    chunks = chunk_markdown("Refund timing", body)
    assert [h for h, _ in chunks] == ["", "Cards", "Debits"]
    assert "# Refund timing" not in chunks[0][1]
    assert chunks[1][1].startswith("Card refunds")


# --------------------------------------------------------------------------- search quality
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("which cards do you accept", "kb-payment-methods"),
        ("do you take PayPal or bank transfer?", "kb-payment-methods"),
        ("when will my refund arrive", "kb-refund-timing"),
        ("how do I add my VAT number", "kb-vat-tax-ids"),
        ("I was charged twice for the same month", "kb-duplicate-charges"),
        ("the pay invoice link in the email has expired", "kb-expired-invoice-links"),
        ("how do I cancel my subscription", "kb-cancellation"),
        ("why is my bill higher this month", "kb-plans-seats-overage"),
        ("my card expired, how do I put in a new one", "kb-card-updates"),
        ("I need a receipt for my last payment for our accountant", "kb-invoices-receipts"),
        ("I opened a chargeback with my bank", "kb-disputes"),
        ("my payment failed, will you try again?", "kb-dunning-retries"),
    ],
)
def test_given_shipped_articles_when_customer_asks_then_right_article_first(
    store: KnowledgeStore, query: str, expected: str
) -> None:
    passages = store.search(query, limit=4)
    assert len(passages) == 4
    assert passages[0].article_id == expected, [(p.article_id, round(p.score, 3)) for p in passages]
    assert passages[0].score > 0.3
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    assert passages[0].source == "shipped"
    assert passages[0].title
    assert passages[0].text


def test_given_blank_query_when_searching_then_nothing(store: KnowledgeStore) -> None:
    assert store.search("   ") == []
    assert store.search("refund", limit=0) == []


# --------------------------------------------------------------------------- idempotency and replacement
def test_given_unchanged_directory_when_loaded_again_then_skipped(store: KnowledgeStore) -> None:
    before = store.count()
    report = store.load_directory()
    assert report.indexed == []
    assert sorted(report.unchanged) == SHIPPED_IDS
    assert store.count() == before


def test_given_same_article_twice_when_indexed_then_no_duplicate_points(store: KnowledgeStore) -> None:
    body = (
        "## Who qualifies\n\nRegistered nonprofit organisations get a discount on any plan on request.\n\n"
        "## How to apply\n\nEmail your registration certificate from the account owner's address to billing."
    )
    first = store.index_article("kb-nonprofit", "Nonprofit discount", body, ["discount"], source="tier3")
    count = store.count()
    second = store.index_article("kb-nonprofit", "Nonprofit discount", body, ["discount"], source="tier3")
    assert first == second
    assert store.count() == count
    store.delete_article("kb-nonprofit")
    assert store.count() == count - first
    assert point_id("kb-nonprofit", 0) == point_id("kb-nonprofit", 0) != point_id("kb-nonprofit", 1)


def test_given_republished_article_when_indexed_then_old_passages_are_replaced(store: KnowledgeStore) -> None:
    old_body = (
        "## Old warehouse address\n\nReturn hardware tokens to the Rotterdam warehouse at Havenstraat 12, "
        "second floor, between nine and five on working days.\n\n## Old courier\n\nUse the courier PostNL "
        "and print the prepaid return label from the portal before you drop the parcel off.\n\n"
        "## Old deadline\n\nReturns are accepted for 14 days after cancellation of the plan; later returns "
        "are charged the replacement fee."
    )
    new_body = (
        "## New address\n\nReturn hardware tokens to the Lisbon office on Rua Augusta 100 within 30 days."
    )
    assert store.index_article("kb-token-returns", "Returning hardware tokens", old_body, ["returns"]) == 3
    assert any(
        "Rotterdam" in t for t in _article_passages(store, "kb-token-returns", "hardware token return")
    )

    assert store.index_article("kb-token-returns", "Returning hardware tokens", new_body, ["returns"]) == 1
    texts = _article_passages(store, "kb-token-returns", "Rotterdam warehouse PostNL courier")
    assert len(texts) == 1
    assert "Lisbon" in texts[0]
    assert all("Rotterdam" not in t and "PostNL" not in t for t in texts)
    store.delete_article("kb-token-returns")


def test_given_new_tier3_article_when_published_then_searchable_without_restart(
    store: KnowledgeStore,
) -> None:
    query = "do you offer a discount for universities and students?"
    assert all(p.article_id != "kb-edu-discount" for p in store.search(query))
    store.index_article(
        "kb-edu-discount",
        "Education discount for universities",
        "## Who qualifies\n\nAccredited universities, schools and their students get 50% off the Pro and "
        "Business plans.\n\n## How to apply\n\nSend proof of enrolment or accreditation from your "
        "institutional email address; the discount applies from the next invoice.",
        ["discount", "education"],
        source="tier3",
    )
    top = store.search(query)[0]
    assert (top.article_id, top.source) == ("kb-edu-discount", "tier3")
    store.delete_article("kb-edu-discount")
    assert all(p.article_id != "kb-edu-discount" for p in store.search(query))


async def test_given_async_wrappers_when_used_then_same_results(store: KnowledgeStore) -> None:
    query = "which cards do you accept"
    assert [p.article_id for p in await store.asearch(query)] == [p.article_id for p in store.search(query)]
    written = await store.aindex_article(
        "kb-async", "Async article", "## Body\n\nInvoices for Antarctic research stations are sent by radio."
    )
    assert written == 1
    assert (await store.asearch("invoices for antarctic research stations", limit=1))[
        0
    ].article_id == "kb-async"
    await store.adelete_article("kb-async")


# --------------------------------------------------------------------------- persistence on disk
def _write(directory: Path, name: str, article_id: str, title: str, body: str) -> None:
    (directory / name).write_text(f"---\nid: {article_id}\ntitle: {title}\ntags: [test]\n---\n\n{body}\n")


def test_given_store_on_disk_when_reopened_then_articles_persist_and_changes_reindex(tmp_path: Path) -> None:
    articles, data = tmp_path / "articles", tmp_path / "qdrant"
    articles.mkdir()
    _write(
        articles, "a.md", "kb-a", "Paying by cheque", "## Cheques\n\nWe do not accept cheques for any plan."
    )
    _write(
        articles,
        "b.md",
        "kb-b",
        "Gift cards",
        "## Gift cards\n\nGift cards can be redeemed on Starter plans.",
    )

    first = KnowledgeStore.open(data)
    assert sorted(first.load_directory(articles).indexed) == ["kb-a", "kb-b"]
    first.close()

    _write(
        articles, "b.md", "kb-b", "Gift cards", "## Gift cards\n\nGift cards are no longer sold or redeemed."
    )
    reopened = KnowledgeStore.open(data)
    try:
        assert reopened.search("can I pay with a cheque", limit=1)[0].article_id == "kb-a"
        report = reopened.load_directory(articles)
        assert (report.indexed, report.unchanged) == (["kb-b"], ["kb-a"])
        assert reopened.count() == 2
        texts = _article_passages(reopened, "kb-b", "gift cards")
        assert texts == ["Gift cards are no longer sold or redeemed."]
    finally:
        reopened.close()
