"""The outbox on both backends: events written with the change that causes them (or not at
all), claimed by one daemon at a time, retried, delivered or given up."""

from __future__ import annotations

import time

import pgcluster
import pytest
from test_journal_contract import a_row, journal, server

from watcher.state.journal import OutboxEvent
from watcher.state.journal_api import Journal
from watcher.state.journal_pg import PgJournal
from watcher.state.states import FileState, IllegalTransition

FIXTURES = (journal, server)


def event(number: int, path: str = "/drop/a.png") -> OutboxEvent:
    now = time.time()
    return OutboxEvent(
        f"msg_{number}", "uploaded", path, "https://h/x", "{}", 0, now, "pending", None, now
    )


def test_events_are_written_with_their_change_and_not_without_it(journal: Journal) -> None:
    journal.put(a_row("/drop/a.png", FileState.REJECTED), events=[event(1)])
    journal.put(a_row("/drop/b.png"))
    journal.update("/drop/b.png", state=FileState.FAILED, events=[event(2, "/drop/b.png")])
    with pytest.raises(IllegalTransition):
        journal.update("/drop/b.png", state=FileState.UPLOADED, events=[event(3, "/drop/b.png")])
    journal.update("/drop/gone.png", state=FileState.FAILED, events=[event(4, "/drop/gone.png")])
    claimed = journal.claim_events(time.time() + 1, 30, 10)
    assert sorted(e.id for e in claimed) == ["msg_1", "msg_2"]  # the refused move wrote none


def test_an_uploads_event_is_written_when_it_is_finished(journal: Journal) -> None:
    journal.put(a_row("/drop/a.png"))
    journal.update("/drop/a.png", state=FileState.UPLOADING)
    journal.update(
        "/drop/a.png", state=FileState.RECORDING, asset_id="a1", asset_url="u", protocol="v1"
    )
    journal.finish_upload("/drop/a.png", cache=True, events=[event(5)])
    (claimed,) = journal.claim_events(time.time() + 1, 30, 10)
    assert claimed.id == "msg_5"


def test_a_claimed_event_is_not_claimed_again_until_its_lease_ends(journal: Journal) -> None:
    journal.add_events([event(6)])
    now = time.time() + 1
    assert [e.id for e in journal.claim_events(now, 30, 10)] == ["msg_6"]
    assert journal.claim_events(now, 30, 10) == []
    assert [e.id for e in journal.claim_events(now + 31, 30, 10)] == ["msg_6"]


def test_retry_delivery_and_death(journal: Journal) -> None:
    journal.add_events([event(7), event(8)])
    now = time.time() + 1
    journal.claim_events(now, 30, 10)
    journal.event_retry("msg_7", 1, now + 100, "HTTP 500")
    journal.event_dead("msg_8", 3, "connection refused")
    assert journal.claim_events(now + 31, 30, 10) == []  # msg_7 is not due yet
    assert journal.next_event_at() == pytest.approx(now + 100)
    (retried,) = journal.claim_events(now + 101, 30, 10)
    assert (retried.id, retried.attempts, retried.last_error) == ("msg_7", 1, "HTTP 500")
    journal.event_delivered("msg_7")
    assert journal.outbox_counts() == {"delivered": 1, "dead": 1}
    (dead,) = journal.dead_events()
    assert (dead.id, dead.last_error) == ("msg_8", "connection refused")


def test_two_daemons_of_a_fleet_claim_each_event_once(server: pgcluster.Cluster) -> None:
    url = server.new_database()
    first = PgJournal(url, owner="first", lease_seconds=30)
    second = PgJournal(url, owner="second", lease_seconds=30)
    try:
        first.add_events([event(n) for n in range(20)])
        now = time.time() + 1
        taken = first.claim_events(now, 30, 7) + second.claim_events(now, 30, 100)
        taken += first.claim_events(now, 30, 100)
        assert sorted(e.id for e in taken) == sorted(f"msg_{n}" for n in range(20))
    finally:
        first.close()
        second.close()
