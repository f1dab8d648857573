"""`tierline audit-inbox`: helpdesk exports read, reasons ranked, input problems named (exit 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.vocab import Intent
from services.router.audit_inbox import NO_SCREEN, absorber_for, absorbers, audit_inbox_main, classify_tickets
from services.router.intent.model import IntentPrediction
from tierline import cli
from tierline.inbox_audit import (
    Absorber,
    BadDate,
    ClassifiedTicket,
    EmptyInbox,
    InboxAuditError,
    InboxFileNotFound,
    InboxFormat,
    Ticket,
    UnknownColumns,
    detect_columns,
    parse_datetime,
    parse_export,
    rank_reasons,
    read_export,
    ticket_text,
    write_csv,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "helpdesk"

ZENDESK_CSV = """Id,Requester,Requester email,Subject,Description,Status,Via,Created at,Updated at,Solved at
101,Ana,ana@example.com,Re: Card declined,"Hi,
my card was declined this morning.

Thanks,
Ana
Acme Ltd",Solved,Email,2026-10-01 09:00:00 +0000,2026-10-01 12:00:00 +0000,2026-10-01 12:30:00 +0000
102,Ben,ben@example.com,invoice please,,Open,Web form,2026-10-02 10:00:00 +0200,,
"""

HELPSCOUT_CSV = (
    "Conversation ID,Number,Customer Name,Customer Email,Mailbox,Subject,Preview,Status,"
    "Created At,Closed At\n"
    "98001,501,Ana,ana@example.org,Support,Renewal,I would like a refund please,closed,"
    "2026-10-01T09:00:00Z,2026-10-03T09:00:00Z\n"
    "98002,502,Ben,ben@example.org,Support,Where is my refund,still waiting on my refund,active,"
    "2026-10-02T08:30Z,\n"
)


def _t(
    reason: str, hours: float | None = None, *, people: bool = True, confident: bool = True
) -> ClassifiedTicket:
    created = datetime(2026, 10, 1, tzinfo=UTC)
    resolved = created + timedelta(hours=hours) if hours is not None else None
    return ClassifiedTicket(reason, created, resolved, reached_people=people, confident=confident)


# --------------------------------------------------------------------------- readers


def test_given_a_zendesk_export_when_read_then_subject_and_cleaned_body_dates_in_utc_and_ids_are_kept() -> (
    None
):
    columns, tickets = parse_export(ZENDESK_CSV)

    assert columns.format is InboxFormat.ZENDESK
    assert (columns.subject, columns.body, columns.created, columns.resolved) == (
        "Subject",
        "Description",
        "Created at",
        "Solved at",
    )
    first, second = tickets
    assert first.ticket_id == "101"
    assert first.text == "Card declined. my card was declined this morning."  # no "Re:", greeting, signature
    assert first.created == datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    assert first.resolved == datetime(2026, 10, 1, 12, 30, tzinfo=UTC)
    assert second.text == "invoice please"  # Zendesk's CSV export often has no body: the subject is read
    assert second.created == datetime(2026, 10, 2, 8, 0, tzinfo=UTC)
    assert second.resolved is None


def test_given_a_helpscout_export_when_read_then_preview_closed_at_and_conversation_id_are_used() -> None:
    columns, tickets = parse_export(HELPSCOUT_CSV)

    assert columns.format is InboxFormat.HELPSCOUT
    assert (columns.ticket_id, columns.body, columns.resolved) == ("Conversation ID", "Preview", "Closed At")
    assert [t.ticket_id for t in tickets] == ["98001", "98002"]
    assert tickets[0].text == "Renewal. I would like a refund please"
    assert tickets[0].resolved is not None
    assert tickets[0].created is not None
    assert tickets[0].resolved - tickets[0].created == timedelta(days=2)
    assert tickets[1].created == datetime(2026, 10, 2, 8, 30, tzinfo=UTC)


def test_given_generic_semicolon_separated_camel_case_columns_when_read_then_they_are_matched() -> None:
    content = (
        "ticketId;title;message;createdAt;resolvedAt\n7;October;send me the invoice;2026-10-01;2026-10-02\n"
    )

    columns, tickets = parse_export(content, InboxFormat.GENERIC)

    assert (columns.subject, columns.body, columns.created, columns.resolved) == (
        "title",
        "message",
        "createdAt",
        "resolvedAt",
    )
    assert tickets == [
        Ticket(
            2,
            "7",
            "October. send me the invoice",
            datetime(2026, 10, 1, tzinfo=UTC),
            datetime(2026, 10, 2, tzinfo=UTC),
        )
    ]


def test_given_the_shipped_examples_when_read_with_auto_then_each_is_detected_as_its_helpdesk() -> None:
    formats = {
        name: read_export(EXAMPLES / name)[0].format
        for name in ("zendesk_tickets.csv", "helpscout_conversations.csv", "generic_tickets.csv")
    }
    counts = {name: len(read_export(EXAMPLES / name)[1]) for name in formats}

    assert formats == {
        "zendesk_tickets.csv": InboxFormat.ZENDESK,
        "helpscout_conversations.csv": InboxFormat.HELPSCOUT,
        "generic_tickets.csv": InboxFormat.GENERIC,
    }
    assert counts["zendesk_tickets.csv"] + counts["helpscout_conversations.csv"] >= 60


def test_given_columns_with_no_ticket_text_when_read_then_the_error_names_found_and_expected_columns() -> (
    None
):
    with pytest.raises(UnknownColumns) as err:
        parse_export("Ticket,Opened,Agent\n1,2026-10-01,Sam\n")

    message = str(err.value)
    assert "'Ticket', 'Opened', 'Agent'" in message
    for expected in ("zendesk", "helpscout", "generic", "subject", "description", "preview", "body"):
        assert expected in message


def test_given_an_explicit_format_whose_columns_are_absent_when_read_then_it_is_refused() -> None:
    with pytest.raises(UnknownColumns, match="helpscout"):
        detect_columns(["Title", "Opened"], InboxFormat.HELPSCOUT)


@pytest.mark.parametrize("value", ["yesterday", "01/02/2026", "2026-13-01", "2026-10-01 25:00"])
def test_given_a_bad_date_when_read_then_the_line_column_and_value_are_named(value: str) -> None:
    content = f"subject,created,resolved\ninvoice please,2026-10-01,2026-10-02\ncard declined,{value},\n"

    with pytest.raises(BadDate) as err:
        parse_export(content)

    assert "line 3" in str(err.value)
    assert "'created'" in str(err.value)
    assert value in str(err.value)


def test_given_resolved_before_created_when_read_then_it_is_a_bad_date() -> None:
    with pytest.raises(BadDate, match="before created"):
        parse_export("subject,created,resolved\ninvoice,2026-10-02 10:00,2026-10-01 10:00\n")


@pytest.mark.parametrize("content", ["", "\n\n", "subject,body,created\n", "subject,body\n,\n  ,  \n"])
def test_given_an_empty_export_when_read_then_it_is_an_empty_inbox(content: str) -> None:
    with pytest.raises(EmptyInbox):
        parse_export(content)


def test_given_a_missing_or_non_utf8_file_when_read_then_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InboxFileNotFound, match="no such file"):
        read_export(tmp_path / "nope.csv")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("subject\nfactura de diciembre año\n".encode("latin-1"))
    with pytest.raises(InboxAuditError, match="not UTF-8"):
        read_export(latin1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-10-01T09:15:00Z", datetime(2026, 10, 1, 9, 15, tzinfo=UTC)),
        ("2026-10-01 09:15", datetime(2026, 10, 1, 9, 15, tzinfo=UTC)),
        ("2026-10-01 11:15:00 +0200", datetime(2026, 10, 1, 9, 15, tzinfo=UTC)),
        ("2026-10-01T04:15:00.123-05:00", datetime(2026, 10, 1, 9, 15, tzinfo=UTC)),
        ("2026-10-01", datetime(2026, 10, 1, tzinfo=UTC)),
        ("1 Oct 2026 09:15", datetime(2026, 10, 1, 9, 15, tzinfo=UTC)),
        ("Oct 1, 2026 09:15 AM", datetime(2026, 10, 1, 9, 15, tzinfo=UTC)),
    ],
)
def test_given_export_timestamps_when_parsed_then_they_are_utc(value: str, expected: datetime) -> None:
    assert parse_datetime(value) == expected


def test_given_html_and_reply_prefixes_in_a_subject_when_read_then_only_its_words_remain() -> None:
    assert ticket_text("RE: Fwd: <b>Invoice &amp; receipt</b>", "") == "Invoice & receipt"
    assert ticket_text("Refund", "refund please") == "refund please"  # a subject the body repeats: once


# --------------------------------------------------------------------------- ranking


def test_given_classified_tickets_when_ranked_then_counts_shares_cumulative_median_and_cost_add_up() -> None:
    tickets = [
        _t("invoice_request", 1),
        _t("invoice_request", 3),
        _t("invoice_request", 8, confident=False),
        _t("refund_request", 10),
        _t("refund_request", None),
        _t("out_of_scope", 2),
    ]
    table = {"invoice_request": Absorber("tier1", "self-heal (send_invoice)", "Health Meter")}

    rows = rank_reasons(tickets, 8.0, table)

    assert [(r.rank, r.reason, r.count) for r in rows] == [
        (1, "invoice_request", 3),
        (2, "refund_request", 2),
        (3, "out_of_scope", 1),
    ]
    assert [round(r.share, 4) for r in rows] == [0.5, 0.3333, 0.1667]
    assert [round(r.cumulative_share, 4) for r in rows] == [0.5, 0.8333, 1.0]
    assert [r.median_hours_to_resolution for r in rows] == [3.0, 10.0, 2.0]  # open tickets left out
    assert [r.human_cost_usd for r in rows] == [24.0, 16.0, 8.0]
    assert rows[0].absorbed_by == "tier1: self-heal (send_invoice)"
    assert rows[0].screen == "Health Meter"
    assert rows[1].absorbed_by.startswith("tier3")  # no route known: a person
    assert round(rows[0].confident_share, 4) == 0.6667


def test_given_equal_counts_when_ranked_then_ties_are_ordered_by_name_and_the_last_row_is_all_volume() -> (
    None
):
    rows = rank_reasons([_t("b"), _t("a"), _t("c"), _t("a"), _t("c")], 1.0, {})

    assert [r.reason for r in rows] == ["a", "c", "b"]
    assert rows[-1].cumulative_share == 1.0


def test_given_history_contacts_when_ranked_then_human_cost_counts_only_those_that_reached_people() -> None:
    rows = rank_reasons(
        [_t("payment_failed", 1, people=False), _t("payment_failed", 2, people=True), _t("human_agent", 1)],
        8.0,
        {},
    )

    assert [(r.reason, r.count, r.reached_people, r.human_cost_usd) for r in rows] == [
        ("payment_failed", 2, 1, 8.0),
        ("human_agent", 1, 1, 8.0),
    ]


def test_given_no_tickets_or_a_negative_rate_when_ranked_then_it_is_refused() -> None:
    with pytest.raises(EmptyInbox):
        rank_reasons([], 8.0, {})
    with pytest.raises(InboxAuditError, match="cost-per-ticket"):
        rank_reasons([_t("a")], -1.0, {})


def test_given_ranked_rows_when_written_then_the_csv_has_the_documented_columns(tmp_path: Path) -> None:
    path = write_csv(rank_reasons([_t("a", 1.5), _t("b")], 8.0, {}), tmp_path / "out" / "reasons.csv")

    lines = path.read_text().splitlines()
    assert lines[0] == (
        "rank,reason,count,share,cumulative_share,median_hours_to_resolution,reached_people,"
        "human_cost_usd,absorbed_by,screen,confident_share"
    )
    assert lines[1].startswith("1,a,1,0.5000,0.5000,1.50,1,8.00,")


# --------------------------------------------------------------------------- who absorbs each reason


def test_given_the_router_tables_when_absorbers_are_derived_then_each_intent_gets_its_routes_tier() -> None:
    table = absorbers(0.78)

    assert set(table) == {i.value for i in Intent}
    assert table["invoice_request"].tier == "tier1"
    assert "send_invoice" in table["invoice_request"].how
    assert table["card_expiring"].screen == "Health Meter: Update card (/update-card)"
    assert "Retry payment" in table["payment_failed"].screen
    assert table["invoice_request"].screen == NO_SCREEN  # Tier 1 sends it, but no portal screen offers it
    assert table["payment_failed"].tier == "tier1"
    assert "diagnosis" in table["payment_failed"].how
    assert "retry_payment" in table["payment_failed"].how
    assert table["refund_request"].tier == "tier2"
    for person in (Intent.HUMAN_AGENT, Intent.FRAUD_COMPROMISED, Intent.OUT_OF_SCOPE):
        assert absorber_for(person, 0.78).tier == "tier3"


class CountingClassifier:
    """A stand-in for IntentClassifier that records each call's batch."""

    threshold = 0.5

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def predict(self, texts: list[str]) -> list[IntentPrediction]:
        self.calls.append(list(texts))
        intent = Intent.INVOICE_REQUEST
        return [IntentPrediction(intent=intent, confidence=0.9, candidates=[(intent, 0.9)]) for _ in texts]


def test_given_five_tickets_and_batches_of_two_when_classified_then_three_encoder_calls_and_progress() -> (
    None
):
    tickets = [Ticket(i + 2, str(i), f"send invoice {i}", None, None) for i in range(5)]
    model = CountingClassifier()
    progress: list[tuple[int, int]] = []

    out = classify_tickets(
        tickets, model, batch_size=2, progress=lambda done, total, _s: progress.append((done, total))
    )

    assert [len(c) for c in model.calls] == [2, 2, 1]
    assert progress == [(2, 5), (4, 5), (5, 5)]
    assert [(c.ticket_id, c.reason, c.confident) for c in out] == [
        (str(i), "invoice_request", True) for i in range(5)
    ]


# --------------------------------------------------------------------------- the command


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("", "is empty"),
        ("Ticket,Agent\n1,Sam\n", "found columns 'Ticket', 'Agent'"),
        ("subject,created\ninvoice,31/12/2026\n", "line 2: column 'created' holds '31/12/2026'"),
    ],
)
def test_given_bad_input_when_the_command_runs_then_exit_2_with_the_reason_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, expected: str
) -> None:
    path = tmp_path / "export.csv"
    if content is not None:
        path.write_text(content)

    code = audit_inbox_main([str(path), "--out", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ")
    assert expected in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_given_neither_or_both_sources_when_the_command_runs_then_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert audit_inbox_main([]) == 2
    assert audit_inbox_main([str(tmp_path / "x.csv"), "--from-history"]) == 2
    assert "either a helpdesk export FILE or --from-history" in capsys.readouterr().err


def test_given_the_tierline_cli_when_audit_inbox_is_parsed_then_it_is_delegated_with_its_options() -> None:
    args: Any = cli.build_parser().parse_known_args(["audit-inbox", "x.csv", "--cost-per-ticket", "5"])

    assert args[0].delegated is True
    assert args[1] == ["x.csv", "--cost-per-ticket", "5"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--from-history", "--since", "soon"], "--since must be a positive duration"),
        (["--from-history"], "cannot reach Postgres"),
    ],
)
def test_given_no_reachable_history_when_audited_from_history_then_exit_2_with_the_reason(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    expected: str,
) -> None:
    monkeypatch.setenv("TIERLINE_DATA_DIR", str(tmp_path))  # no stack.json here
    monkeypatch.setenv(
        "TIERLINE_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:1/tierline"
    )  # nothing listens

    code = audit_inbox_main([*argv, "--out", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert "Traceback" not in err


@pytest.mark.parametrize("dsn_in_environment", [False, True])
def test_given_a_local_stack_when_read_from_history_then_its_postgres_is_used_unless_the_env_names_one(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    dsn_in_environment: bool,
) -> None:
    from tierline_tools.stack.manager import StackConfig

    stack = StackConfig.for_tests(tmp_path)  # a stack.json whose ports nothing listens on
    stack.save()
    monkeypatch.setenv("TIERLINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TIERLINE_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:1/tierline")
    if not dsn_in_environment:
        monkeypatch.delenv("TIERLINE_POSTGRES_DSN")

    import argparse

    # as `tierline audit-inbox` runs it: beside the local stack (its DSN unless the env names one)
    import os

    from tierline.cli import _beside_the_local_stack

    saved = dict(os.environ)
    try:
        _beside_the_local_stack(argparse.Namespace(data_dir=None))
        assert audit_inbox_main(["--from-history", "--out", str(tmp_path / "out")]) == 2
    finally:  # the command puts the stack's addresses in the environment: give the next test its own
        os.environ.clear()
        os.environ.update(saved)

    port = 1 if dsn_in_environment else stack.postgres_port
    assert f"'127.0.0.1', {port})" in capsys.readouterr().err


def test_given_no_matplotlib_when_the_chart_is_drawn_then_none_and_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from tierline.inbox_audit import write_chart

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError

    assert write_chart(rank_reasons([_t("a")], 8.0, {}), tmp_path / "reasons.png", "t") is None
    assert not (tmp_path / "reasons.png").exists()
