"""The outbox: a message is delivered once even with several workers claiming at the same moment,
a dead worker's lease expires, failures back off on a fixed schedule (pinned clock) and end as
`failed` after MAX_ATTEMPTS; a request tries what it enqueued without waiting past its budget; no
head-of-line blocking: mail and first attempts go before retries, and a destination that failed
answers for its other messages instead of being waited on once per message."""
from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timezone

import pytest

from idp import clock, outbox
from idp.extensions import db
from idp.models import OutboxMessage

KIND = "test.record"


URGENT = "test.urgent"


class Recorder:
    """The handler of KIND (and URGENT): records payload["n"]; fails while `failing`; blocks while
    `gate` is shut; a payload whose destination ("to") is in `down` fails as DestinationFailed.
    `tried` counts every call."""

    def __init__(self):
        self.seen: list[int] = []
        self.lock = threading.Lock()
        self.failing = False
        self.impossible = False
        self.down: set[str] = set()
        self.tried = 0
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def __call__(self, payload: dict) -> None:
        self.entered.set()
        with self.lock:
            self.tried += 1
        if self.gate is not None:
            self.gate.wait(30)
        if self.impossible:
            raise outbox.DeliveryImpossible("cannot be done")
        if payload.get("to") in self.down:
            raise outbox.DestinationFailed(f"{payload['to']} did not answer")
        if self.failing:
            raise outbox.DeliveryFailed("receiver said no")
        with self.lock:
            self.seen.append(payload["n"])


@pytest.fixture
def recorder(app):
    handler = Recorder()
    outbox.register_handler(app, KIND, handler, destination="to")
    outbox.register_handler(app, URGENT, handler, first=True)
    yield handler
    if handler.gate is not None:
        handler.gate.set()
    app.extensions["idp.outbox"].pop(KIND, None)
    app.extensions["idp.outbox"].pop(URGENT, None)


@pytest.fixture
def pinned():
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0))
    return clock


def enqueue(app, count: int = 1, kind: str = KIND) -> list[int]:
    with app.app_context():
        rows = [outbox.enqueue(kind, {"n": n}) for n in range(count)]
        db.session.commit()
        return [row.id for row in rows]


def enqueue_to(app, *payloads: dict, kind: str = KIND) -> list[int]:
    with app.app_context():
        rows = [outbox.enqueue(kind, payload) for payload in payloads]
        db.session.commit()
        return [row.id for row in rows]


def row(app, message_id: int) -> OutboxMessage:
    with app.app_context():
        found = db.session.get(OutboxMessage, message_id)
        db.session.expunge(found)
        return found


def run_once(app, ids: list[int], limit: int = 20) -> tuple[int, int]:
    with app.app_context():
        return outbox.run_once(limit=limit, ids=ids)


def test_a_due_message_is_delivered_and_recorded(app, recorder):
    [message_id] = enqueue(app)
    assert run_once(app, [message_id]) == (1, 0)
    delivered = row(app, message_id)
    assert delivered.status == "delivered" and delivered.attempts == 1 and delivered.delivered_at is not None
    assert delivered.last_error is None
    assert run_once(app, [message_id]) == (0, 0)
    assert recorder.seen == [0]


def test_concurrent_workers_never_deliver_a_message_twice(app, recorder):
    ids = enqueue(app, 60)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker():
        try:
            barrier.wait()
            while run_once(app, ids, limit=5) != (0, 0):
                pass
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert Counter(recorder.seen) == Counter(range(60))   # each exactly once
    assert {row(app, i).status for i in ids} == {"delivered"}
    assert {row(app, i).attempts for i in ids} == {1}


def test_a_claim_whose_worker_died_is_taken_over_after_the_lease(app, recorder, pinned):
    [message_id] = enqueue(app)
    with app.app_context():
        assert [m.id for m in outbox.claim(ids=[message_id])] == [message_id]   # ... and the worker dies
    assert run_once(app, [message_id]) == (0, 0)
    pinned.advance(outbox.LEASE.total_seconds() - 1)
    assert run_once(app, [message_id]) == (0, 0)
    pinned.advance(1)
    assert run_once(app, [message_id]) == (1, 0)
    assert row(app, message_id).attempts == 2 and recorder.seen == [0]


def failure_events(app, message_id: int) -> list[dict]:
    from idp.models import AuditEvent
    with app.app_context():
        return [e.details for e in db.session.scalars(db.select(AuditEvent).where(
            AuditEvent.type == "outbox.message.failed").order_by(AuditEvent.id)) if e.details["message"] == message_id]


def test_failures_back_off_on_the_schedule_then_end_as_failed(app, recorder, pinned):
    recorder.failing = True
    [message_id] = enqueue(app)
    expected = [30, 60, 120, 240, 480, 960, 1920, 3840, 7200, 7200, 7200]
    assert [int(outbox.retry_delay(n).total_seconds()) for n in range(1, outbox.MAX_ATTEMPTS)] == expected
    for attempt, delay in enumerate(expected, start=1):
        assert run_once(app, [message_id]) == (0, 1)
        failed = row(app, message_id)
        assert failed.status == "pending" and failed.attempts == attempt
        assert failed.last_error == "receiver said no"
        assert clock.aware(failed.next_attempt_at) == clock.now() + outbox.retry_delay(attempt)
        pinned.advance(delay - 1)
        assert run_once(app, [message_id]) == (0, 0)   # not due yet
        pinned.advance(1)
    assert run_once(app, [message_id]) == (0, 1)       # attempt MAX_ATTEMPTS
    final = row(app, message_id)
    assert final.status == "failed" and final.attempts == outbox.MAX_ATTEMPTS
    assert failure_events(app, message_id) == [{"message": message_id, "kind": final.kind, "attempts": outbox.MAX_ATTEMPTS,
                                    "error": "receiver said no"}]
    pinned.advance(10 * 24 * 3600)
    assert run_once(app, [message_id]) == (0, 0)       # never again
    assert recorder.seen == []


def test_a_delivery_that_cannot_succeed_fails_at_once_and_is_never_retried(app, recorder, pinned):
    recorder.impossible = True
    [message_id] = enqueue(app)
    assert run_once(app, [message_id]) == (0, 1)
    failed = row(app, message_id)
    assert failed.status == "failed" and failed.attempts == 1 and failed.last_error == "cannot be done"
    assert [event["attempts"] for event in failure_events(app, message_id)] == [1]
    recorder.impossible = False
    pinned.advance(10 * 24 * 3600)
    assert run_once(app, [message_id]) == (0, 0)
    assert recorder.seen == []


def test_a_failure_followed_by_success_is_delivered(app, recorder, pinned):
    recorder.failing = True
    [message_id] = enqueue(app)
    assert run_once(app, [message_id]) == (0, 1)
    recorder.failing = False
    pinned.advance(outbox.BASE_DELAY)
    assert run_once(app, [message_id]) == (1, 0)
    delivered = row(app, message_id)
    assert delivered.status == "delivered" and delivered.attempts == 2 and delivered.last_error is None


# --- no head-of-line blocking ------------------------------------------------------------------
def test_mail_goes_first_and_first_attempts_before_retries(app, recorder, pinned):
    recorder.failing = True
    [retry] = enqueue_to(app, {"n": 1})
    assert run_once(app, [retry]) == (0, 1)
    recorder.failing = False
    fresh, = enqueue_to(app, {"n": 2})
    urgent, = enqueue_to(app, {"n": 3}, kind=URGENT)
    pinned.advance(outbox.BASE_DELAY)  # all three due
    for _ in range(3):
        assert run_once(app, [retry, fresh, urgent], limit=1) == (1, 0)
    assert recorder.seen == [3, 2, 1]


def test_a_destination_that_failed_answers_for_its_other_due_messages_untried(app, recorder, pinned):
    recorder.down = {"hanging"}
    hanging = enqueue_to(app, *({"n": n, "to": "hanging"} for n in range(3)))
    [elsewhere] = enqueue_to(app, {"n": 9, "to": "elsewhere"})
    assert run_once(app, hanging + [elsewhere], limit=1) == (0, 1)
    assert recorder.tried == 1
    rows = [row(app, i) for i in hanging]
    assert [(r.status, r.attempts) for r in rows] == [("pending", 1)] * 3
    assert rows[0].last_error == "hanging did not answer"
    assert {r.last_error for r in rows[1:]} == {
        "not tried: its destination had just failed (hanging did not answer)"}
    assert {clock.aware(r.next_attempt_at) for r in rows} == {clock.now() + outbox.retry_delay(1)}
    assert run_once(app, hanging + [elsewhere], limit=1) == (1, 0)  # another destination is not held up
    assert recorder.seen == [9] and recorder.tried == 2
    pinned.advance(outbox.BASE_DELAY)
    assert run_once(app, hanging) == (0, 3)          # one pass, one attempt, for the three
    assert recorder.tried == 3 and {row(app, i).attempts for i in hanging} == {2}
    recorder.down = set()
    pinned.advance(2 * outbox.BASE_DELAY)
    assert run_once(app, hanging) == (3, 0)
    assert sorted(recorder.seen) == [0, 1, 2, 9]


def test_a_failing_destination_is_tried_once_per_back_off_step_however_many_messages_wait(app, recorder, pinned):
    recorder.down = {"hanging"}
    [first] = enqueue_to(app, {"n": 1, "to": "hanging"})
    assert run_once(app, [first]) == (0, 1)          # next attempt in 30 s
    pinned.advance(10)
    [second] = enqueue_to(app, {"n": 2, "to": "hanging"})
    assert run_once(app, [first, second]) == (0, 1)  # its own first attempt fails too ...
    assert clock.aware(row(app, first).next_attempt_at) == clock.now() + outbox.retry_delay(1)  # ... so the first waits
    assert row(app, first).attempts == 1 and recorder.tried == 2
    pinned.advance(outbox.BASE_DELAY)
    assert run_once(app, [first, second], limit=1) == (0, 1)
    assert recorder.tried == 3 and [row(app, i).attempts for i in (first, second)] == [2, 2]


def test_messages_of_a_destination_that_never_answers_end_as_failed_and_audited(app, recorder, pinned):
    recorder.down = {"hanging"}
    ids = enqueue_to(app, *({"n": n, "to": "hanging"} for n in range(2)))
    for _ in range(outbox.MAX_ATTEMPTS):
        assert run_once(app, ids, limit=1) == (0, 1)
        pinned.advance(outbox.MAX_DELAY)
    assert recorder.tried == outbox.MAX_ATTEMPTS
    assert [(row(app, i).status, row(app, i).attempts) for i in ids] == [("failed", outbox.MAX_ATTEMPTS)] * 2
    assert [[e["attempts"] for e in failure_events(app, i)] for i in ids] == [[outbox.MAX_ATTEMPTS]] * 2
    assert run_once(app, ids) == (0, 0)


def test_a_failure_of_one_message_is_not_shared(app, recorder, pinned):
    recorder.failing = True                          # DeliveryFailed: about that message only
    ids = enqueue_to(app, *({"n": n, "to": "picky"} for n in range(2)))
    assert run_once(app, ids, limit=1) == (0, 1)
    assert [row(app, i).attempts for i in ids] == [1, 0]
    recorder.failing = False
    assert run_once(app, ids, limit=1) == (1, 0)
    assert recorder.seen == [1]


def test_a_kind_without_handler_is_retried_not_lost(app):
    [message_id] = enqueue(app, kind="test.nobody")
    assert run_once(app, [message_id]) == (0, 1)
    pending = row(app, message_id)
    assert pending.status == "pending" and pending.last_error == "no handler for test.nobody"


def test_a_request_tries_what_it_enqueued_without_waiting_past_its_budget(app, recorder):
    recorder.gate = threading.Event()
    with app.test_request_context("/"):
        outbox.enqueue(KIND, {"n": 7})
        db.session.commit()
        threads = outbox.deliver_enqueued(0.05)
        assert recorder.entered.wait(10)
        assert threads and threads[0].is_alive()     # returned while the delivery is still blocked
    recorder.gate.set()
    threads[0].join(30)
    assert recorder.seen == [7]


def test_nothing_is_tried_for_a_transaction_that_rolled_back(app, recorder):
    with app.test_request_context("/"):
        outbox.enqueue(KIND, {"n": 8})
        db.session.flush()
        db.session.rollback()
        assert outbox.deliver_enqueued(5) == []
    assert recorder.seen == []


def test_the_worker_loop_delivers_and_stops_when_told(app, recorder):
    enqueue(app)
    stop = threading.Event()
    worker = outbox.start_worker_thread(app, stop, poll_seconds=0.05)
    assert recorder.entered.wait(30)
    stop.set()
    worker.join(30)
    assert not worker.is_alive() and recorder.seen == [0]


def test_finished_messages_are_purged_and_pending_ones_kept(app, recorder, pinned):
    delivered_id, pending_id = enqueue(app, 2)
    run_once(app, [delivered_id])
    pinned.advance(3600)
    with app.app_context():
        outbox.delete_finished(clock.now())
        assert db.session.get(OutboxMessage, delivered_id) is None
        assert db.session.get(OutboxMessage, pending_id) is not None


@pytest.mark.parametrize("name, value", [("IDP_OUTBOX_WORKER", "sometimes"), ("IDP_OUTBOX_WAIT_MS", "-1"),
                                         ("IDP_OUTBOX_WAIT_MS", "10001"), ("IDP_BACKCHANNEL_LOGOUT_TIMEOUT", "0"),
                                         ("IDP_BACKCHANNEL_LOGOUT_TIMEOUT", "31"), ("IDP_OUTBOX_POLL_SECONDS", "0"),
                                         ("IDP_SESSION_SWEEP_SECONDS", "0")])
def test_outbox_settings_out_of_range_stop_start_up_naming_the_variable(tmp_path, name, value):
    from idp.config import ConfigError, from_env
    with pytest.raises(ConfigError, match=name):
        from_env({"IDP_ENV": "development", "IDP_INSTANCE_PATH": str(tmp_path), name: value})


@pytest.mark.parametrize("env, mode, inline", [("development", "auto", True), ("production", "auto", False),
                                               ("production", "inline", True), ("development", "off", False)])
def test_where_the_worker_runs(tmp_path, env, mode, inline):
    from idp.config import from_env
    settings = from_env({"IDP_ENV": env, "IDP_ISSUER": "https://id.example.com", "IDP_INSTANCE_PATH": str(tmp_path),
                         "IDP_OUTBOX_WORKER": mode})
    assert settings.runs_inline_worker is inline


@pytest.mark.parametrize("mode, started", [("inline", True), ("off", False)])
def test_the_inline_worker_starts_with_the_first_request_only_when_asked(tmp_path, mode, started):
    from flask_migrate import upgrade

    from idp import create_app
    from idp.config import from_env
    application = create_app(from_env({}, env="development", instance_path=str(tmp_path), log_level="WARNING",
                                      secret_key="s" * 40, outbox_worker=mode))
    with application.app_context():
        upgrade()
    assert "idp.worker" not in application.extensions        # building the app (as the CLI does) starts nothing
    assert application.test_client().get("/healthz", base_url="http://127.0.0.1:5000").status_code == 200
    assert ("idp.worker" in application.extensions) is started
    if started:
        application.extensions["idp.worker"].set()
