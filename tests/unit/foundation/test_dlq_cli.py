"""How `immunreg dlq` shows dead letters and replays in a terminal."""

from __future__ import annotations

from immunreg.cli import build_parser
from immunreg.cli_dlq import summary, table
from immunreg.messaging.dead_letters import DeadLetter, ReplayReport, source_topic_of


def letter(**changes: object) -> DeadLetter:
    fields: dict[str, object] = {
        "dlq_partition": 0,
        "dlq_offset": 4,
        "source_topic": "booking.events.v1",
        "source_partition": 2,
        "source_offset": 17,
        "group": "certificates",
        "reason": "RuntimeError: " + "x" * 100,
        "failed_at": "2021-03-01T08:30:00.123456+00:00",
        "event_type": "AppointmentBooked",
        "event_id": "0190c1f2-0000-7000-8000-000000000001",
        "stream_id": "appointment-1",
    }
    return DeadLetter(**{**fields, **changes})  # type: ignore[arg-type]


def test_list_shows_one_aligned_line_per_dead_letter_with_the_reason_shortened() -> None:
    lines = table([letter(), letter(event_type=None, event_id=None, stream_id=None)]).splitlines()

    assert lines[0].split() == [
        "SOURCE", "GROUP", "TYPE", "EVENT", "ID", "STREAM", "FAILED", "AT", "REPLAYED", "REASON"
    ]  # fmt: skip
    assert lines[1].startswith("booking.events.v1[2]@17  certificates  AppointmentBooked")
    assert "2021-03-01T08:30:00  no" in lines[1] and lines[1].endswith("…")
    assert "(undecodable)" in lines[2]
    assert lines[1].index("certificates") == lines[2].index("certificates")
    assert table([]) == "no dead letters\n"


def test_replay_summary_names_what_went_back_and_what_cannot() -> None:
    report = ReplayReport(
        topic="booking.events.v1",
        dry_run=True,
        replayed=[letter()],
        already_replayed=2,
        not_replayable=[letter(event_id=None)],
    )

    text = summary(report)

    assert text.startswith("would replay 1 dead letter(s) to booking.events.v1\n")
    assert "2 replayed before: left alone" in text
    assert "1 not replayable (undecodable envelope):" in text


def test_the_topic_may_be_named_with_or_without_its_dlq_suffix() -> None:
    assert source_topic_of("booking.events.v1.dlq") == "booking.events.v1"
    assert source_topic_of("booking.events.v1") == "booking.events.v1"


def test_the_subcommands_take_their_options() -> None:
    args = build_parser().parse_args(
        ["dlq", "replay", "booking.events.v1", "--group", "certificates", "--dry-run"]
    )
    assert (args.action, args.group, args.dry_run, args.json) == (
        "replay",
        "certificates",
        True,
        False,
    )
