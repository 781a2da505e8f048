"""Review R11 (cd105b6, tester T3's fix): a follow whose log read fails once, for a run
that has just ended, now ends at once with a terminal event synthesized from the record
(`terminal_of(ended, last + 1)`) instead of retrying the read, so every event the reader
had not yet received is dropped though the log still holds them: a one-read blip right
after a turn completed hands the SSE client `run.completed` without the reply's
`message.completed` (nor a `run.snapshot` of the committed messages, which is what DESIGN
§7 promises when events are missing). Before cd105b6 the retry 50 ms later delivered them.

Failed at cd105b6 on every backend (events [(1, delta), (2, run.completed)]); a terminal
record now ends the follow only at the second failed read in a row."""

from __future__ import annotations

import pytest

from app.domain import RunStatus
from tests.contract.coordination.conftest import RunsEnv
from tests.contract.coordination.test_coordination_follow_outage import collect, failing_reads
from tests.contract.coordination.test_coordination_runs import new_record


async def test_one_failed_read_after_the_end_still_delivers_the_events_the_log_holds(
    runs_env: RunsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = await runs_env.new()
    record = new_record("run-blip")
    await runs.create(record)
    await runs.publish("run-blip", "message.delta", {"delta": "Hel"})
    await runs.publish("run-blip", "message.completed", {"message": {"content": "Hello"}})
    done = record.model_copy(
        update={"run": record.run.model_copy(update={"status": RunStatus.completed})}
    )
    await runs.save_and_publish(done, "run.completed", {})
    # one read fails after the first event (a blip), the next reads normally
    failing_reads(runs, monkeypatch, fail_after_events=1, failures=1)
    events = await collect(runs, "run-blip")
    assert [(e.seq, e.type) for e in events] == [
        (1, "message.delta"),
        (2, "message.completed"),
        (3, "run.completed"),
    ]
