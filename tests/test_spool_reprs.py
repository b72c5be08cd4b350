"""The spool's records show the size of an event's wire JSON in their reprs, never its content
(the prompt, the response and the metadata are in it)."""

from __future__ import annotations

from pathlib import Path

from spool_helpers import record

from sentinel_durable.spool import Spool, read_dead_letters

SECRET = "secret-prompt-7c1d"


def test_spooled_claimed_and_dead_letter_records_show_the_data_size_not_the_content(tmp_path: Path) -> None:
    spooled = record(SECRET, note=SECRET)
    assert SECRET.encode() in spooled.data
    with Spool(tmp_path) as spool:
        spool.put_many([spooled])
        claim = spool.claim(1)
        assert claim is not None
        (claimed,) = claim.records
        spool.dead_letter(claim, claim.records, "MessageSizeTooLargeError: too big")
        (dead,) = read_dead_letters(spool.active_path)
    size = f"data=<{len(spooled.data)} bytes>"
    for shown in (repr(spooled), repr(claimed), repr(claim), repr(dead)):
        assert SECRET not in shown
        assert size in shown, shown
        assert spooled.event_id in shown, shown
    assert repr(spooled).startswith("SpoolRecord(event_id=")
    assert "attempts=0" in repr(claimed)
    assert "last_error='MessageSizeTooLargeError: too big'" in repr(dead)
