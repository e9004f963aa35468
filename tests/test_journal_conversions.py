"""The journal's record of conversions, on both backends: planned once per original's bytes
and target, finished with what came out, running ones cleared at start."""

from __future__ import annotations

from test_journal_contract import journal, server

from watcher.state.journal_api import Journal

# The contract suite's fixtures: every test here runs on SQLite and on PostgreSQL.
FIXTURES = (journal, server)

SOURCE = "cd" * 32
OUTPUT = "ef" * 32


def test_a_conversion_is_planned_once_and_finished_with_what_came_out(journal: Journal) -> None:
    assert journal.conversion(SOURCE, "video/mp4") is None
    journal.plan_conversion(SOURCE, "video/mp4", "video/quicktime", 1000)
    journal.plan_conversion(SOURCE, "video/mp4", "video/x-matroska", 999)  # kept as planned
    planned = journal.conversion(SOURCE, "video/mp4")
    assert planned is not None
    assert (planned.source_type, planned.source_size, planned.output_sha256) == (
        "video/quicktime",
        1000,
        None,
    )
    journal.start_conversion(SOURCE, "video/mp4")
    assert journal.conversions_running() == 1
    journal.finish_conversion(
        SOURCE,
        "video/mp4",
        output_sha256=None,
        output_size=900,
        action="remux",
        tool="ffmpeg",
        tool_version="5.1",
    )
    assert journal.conversions_running() == 0
    journal.set_conversion_output(SOURCE, "video/mp4", OUTPUT)
    done = journal.conversion(SOURCE, "video/mp4")
    assert done is not None
    assert (done.output_sha256, done.output_size, done.action, done.tool) == (
        OUTPUT,
        900,
        "remux",
        "ffmpeg",
    )
    assert done.converted_at is not None and done.started_at is None
    # Another target of the same bytes is a conversion of its own.
    assert journal.conversion(SOURCE, "audio/mpeg") is None


def test_running_conversions_are_cleared_at_start(journal: Journal) -> None:
    journal.plan_conversion(SOURCE, "image/jpeg", "image/heic", 10)
    journal.start_conversion(SOURCE, "image/jpeg")
    journal.clear_running_conversions()
    assert journal.conversions_running() == 0
    journal.stop_conversion(SOURCE, "image/jpeg")
    row = journal.conversion(SOURCE, "image/jpeg")
    assert row is not None and row.started_at is None and row.output_sha256 is None
