"""The one way out for side effects: enqueue() adds a row in the caller's transaction; a worker
claims due rows, delivers them through the handler registered for their kind, and retries
failures with exponential back-off. Rows survive restarts; several workers can run at once:
a claim is one conditional UPDATE ... RETURNING (after SELECT ... FOR UPDATE SKIP LOCKED on
PostgreSQL), so a row is delivered by one worker at a time, and a lease lets another worker take
it over when its worker died mid-delivery.

A request that enqueued messages tries them at once after it committed, for at most
IDP_OUTBOX_WAIT_MS (deliver_enqueued); whatever is unfinished stays for the worker.

No head-of-line blocking: one slow destination (a client's backchannel_logout_uri that accepts
connections and never answers) must delay only its own messages, not a password-reset mail or
another app's logout token. Two rules keep it so:
- A claim takes first attempts before retries, and within each, mail (the kinds registered with
  first=True: one send to our own server, that a person waits for) before the rest; by id after
  that. A message whose last attempt failed thus never goes ahead of one not tried yet.
- When a delivery fails because its destination itself failed (DestinationFailed: no connection,
  no answer within the timeout), the destination's other messages due now share that failure
  without being tried (one attempt each, the same back-off, `failed` after the last, audited),
  and those due before the failed one's next attempt wait for it. A destination that does not
  answer so costs the worker one timeout per back-off step, however many messages it has queued,
  instead of one per message and attempt. Which destination a message goes to is the payload
  key its kind registered (register_handler's `destination`: client_id for logout tokens)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask, current_app, g
from sqlalchemy import and_, inspect, select, update

from idp import audit
from idp.clock import now
from idp.extensions import db
from idp.models.batches import delete_in_batches
from idp.models.outbox import OutboxMessage

log = logging.getLogger("idp.outbox")

LEASE = timedelta(seconds=120)       # a claimed row is retried after this if its worker died
BASE_DELAY = 30                      # seconds before the first retry; doubles each time ...
MAX_DELAY = 7200                     # ... up to two hours
MAX_ATTEMPTS = 12                    # about 9 hours from the first attempt to the last
MAX_INLINE = 16                      # messages one request tries itself; more wait for the worker
MAX_SHARED = 500                     # due messages one destination failure answers for at a time


class DeliveryFailed(Exception):
    """A handler could not deliver; the message (no secrets) is kept as last_error."""


class DeliveryImpossible(DeliveryFailed):
    """A delivery that no retry can make succeed (the handler says why); the message is marked
    failed at once instead of being tried MAX_ATTEMPTS times into the void."""


class DestinationFailed(DeliveryFailed):
    """The destination itself failed, whatever the message: no connection, or no answer within
    the timeout. Its other due messages share the failure untried (see the module docstring)."""


@dataclass(frozen=True)
class Route:
    """How one kind is delivered: the handler; the payload key that names the destination
    (messages with the same value go to the same place; None: each message is judged alone);
    and whether the kind goes before the others (first)."""
    handler: Callable[[dict], None]
    destination: str | None = None
    first: bool = False


def register_handler(app: Flask, kind: str, handler: Callable[[dict], None], *,
                     destination: str | None = None, first: bool = False) -> None:
    """Rooms above the outbox say how to deliver their kinds (their init wires them)."""
    app.extensions.setdefault("idp.outbox", {})[kind] = Route(handler, destination, first)


def _routes() -> dict[str, Route]:
    return current_app.extensions.get("idp.outbox", {})


def enqueue(kind: str, payload: dict, *, inline: bool = True) -> OutboxMessage:
    """Add a message to the current unit of work; the caller commits. The message is also noted
    on `g`, so deliver_enqueued() can try it as soon as the transaction is committed; with
    inline=False it is left to the worker: the request does not wait for it (a page whose answer
    must not take longer when there is something to deliver, see users.recovery)."""
    row = OutboxMessage(kind=kind, payload=payload, status="pending", attempts=0, next_attempt_at=now())
    db.session.add(row)
    if inline:
        g.setdefault("idp_outbox_enqueued", []).append(row)
    return row


def retry_delay(attempts: int) -> timedelta:
    """The wait after the attempts-th failed attempt: 30 s, 60 s, 2 min ... capped at 2 h."""
    return timedelta(seconds=min(BASE_DELAY * 2 ** (attempts - 1), MAX_DELAY))


def _due(t) -> tuple:
    return OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= t


def _priority() -> list:
    """First attempts before retries; mail (first=True kinds) before the rest; then by id."""
    first = [kind for kind, route in _routes().items() if route.first]
    return [OutboxMessage.last_error.is_not(None), *([OutboxMessage.kind.not_in(first)] if first else []),
            OutboxMessage.id]


def claim(limit: int = 20, ids: list[int] | None = None) -> list[OutboxMessage]:
    """Take up to `limit` due messages (optionally only these ids) for this worker, in the order
    they are to be tried (_priority); commits."""
    t = now()
    query = select(OutboxMessage.id).where(*_due(t)).order_by(*_priority()).limit(limit)
    if ids is not None:
        query = query.where(OutboxMessage.id.in_(ids))
    return _take(query, t)


def _take(query, t) -> list[OutboxMessage]:
    """Claim the due rows `query` selects, in its order; commits. The UPDATE re-checks that each
    row is still pending and due, so of two workers that chose the same row only one gets it back
    from RETURNING."""
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    chosen = list(db.session.scalars(query))
    claimed_ids = set()
    if chosen:
        result = db.session.execute(
            update(OutboxMessage).where(OutboxMessage.id.in_(chosen), *_due(t))
            .values(next_attempt_at=t + LEASE, attempts=OutboxMessage.attempts + 1)
            .returning(OutboxMessage.id), execution_options={"synchronize_session": False})
        claimed_ids = {row_id for (row_id,) in result}
    db.session.commit()
    if not claimed_ids:
        return []
    rows = {row.id: row for row in db.session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(claimed_ids)))}
    return [rows[row_id] for row_id in chosen if row_id in rows]


def deliver(message: OutboxMessage) -> bool:
    """Run the handler for one claimed message and record the outcome; commits."""
    return _deliver(message) is None


def _deliver(message: OutboxMessage) -> DeliveryFailed | None:
    """deliver(), returning the failure (None once delivered); a failed destination's other due
    messages share it (_share_failure)."""
    route = _routes().get(message.kind)
    try:
        if route is None:
            raise DeliveryFailed(f"no handler for {message.kind}")
        route.handler(message.payload)
    except DeliveryFailed as failure:
        _retry_later(message, str(failure), give_up=isinstance(failure, DeliveryImpossible))
        where = _destination(message)
        if isinstance(failure, DestinationFailed) and where is not None:
            _share_failure(message, where, str(failure))
        return failure
    message.status = "delivered"
    message.delivered_at = now()
    message.last_error = None
    db.session.commit()
    return None


def _record_failure(message: OutboxMessage, error: str, give_up: bool = False) -> None:
    message.last_error = error[:500]
    if give_up or message.attempts >= MAX_ATTEMPTS:
        message.status = "failed"
        log.warning("outbox message %s (%s) failed for good: %s", message.id, message.kind, message.last_error)
        # An operator asks the audit trail why an app never heard of a logout, or a mail never came.
        audit.record("outbox.message.failed", outcome="failure", message=message.id, kind=message.kind,
                     attempts=message.attempts, error=message.last_error)
    else:
        message.next_attempt_at = now() + retry_delay(message.attempts)
        log.info("outbox message %s (%s) attempt %s failed: %s", message.id, message.kind, message.attempts,
                 message.last_error)


def _retry_later(message: OutboxMessage, error: str, give_up: bool = False) -> None:
    _record_failure(message, error, give_up)
    db.session.commit()


# --- a destination that failed ------------------------------------------------------------------
def _destination(message: OutboxMessage) -> tuple[str, str, str] | None:
    """(kind, payload key, value) naming where the message goes, or None (judged alone)."""
    route = _routes().get(message.kind)
    if route is None or route.destination is None:
        return None
    value = (message.payload or {}).get(route.destination)
    return (message.kind, route.destination, value) if isinstance(value, str) else None


def _untried(error: str) -> str:
    return f"not tried: its destination had just failed ({error})"


def _share_failure(message: OutboxMessage, where: tuple[str, str, str], error: str) -> None:
    """The destination of `message` failed: its other messages due now get the same failure,
    untried (claimed, so each counts an attempt and backs off, and ends `failed` after the last
    as if tried), and its pending messages due before `message`'s next attempt wait for it;
    commits. Rows another worker holds (SKIP LOCKED) are left to it."""
    kind, key, value = where
    same = (OutboxMessage.kind == kind, OutboxMessage.payload[key].as_string() == value,
            OutboxMessage.id != message.id)
    t = now()
    due = select(OutboxMessage.id).where(*_due(t), *same).order_by(OutboxMessage.id).limit(MAX_SHARED)
    for other in _take(due, t):
        _record_failure(other, _untried(error))
    if message.status == "pending":
        _wait_for(message, same, t)
    db.session.commit()


def _wait_for(message: OutboxMessage, same: tuple, t) -> None:
    """The destination's pending messages due between now and `message`'s next attempt are due
    with it instead, so the next attempt answers for them all."""
    later = select(OutboxMessage.id).where(OutboxMessage.status == "pending", *same, OutboxMessage.next_attempt_at > t,
                                           OutboxMessage.next_attempt_at < message.next_attempt_at)
    if db.session.get_bind().dialect.name == "postgresql":
        later = later.with_for_update(skip_locked=True)
    waiting = list(db.session.scalars(later))
    if waiting:
        db.session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(waiting), OutboxMessage.status == "pending")
                           .values(next_attempt_at=message.next_attempt_at),
                           execution_options={"synchronize_session": False})


def run_once(limit: int = 20, ids: list[int] | None = None) -> tuple[int, int]:
    """Deliver what is due now; returns (delivered, failed attempts). A destination that failed in
    this pass is not tried again in it: its other claimed messages share the failure. Messages a
    handler enqueued (a reset request queues its mail) are tried in the same pass, once."""
    delivered, failed = _run(limit, ids)
    rows = g.pop("idp_outbox_enqueued", [])
    follow_ups = [key[0] for key in (inspect(row).identity for row in rows) if key is not None]
    if follow_ups:
        more = _run(len(follow_ups), follow_ups)
        delivered, failed = delivered + more[0], failed + more[1]
    return delivered, failed


def _run(limit: int, ids: list[int] | None) -> tuple[int, int]:
    delivered = failed = 0
    down: dict[tuple, str] = {}
    for message in claim(limit, ids):
        where = _destination(message)
        if where is not None and where in down:
            _retry_later(message, _untried(down[where]))
            failed += 1
            continue
        failure = _deliver(message)
        if failure is None:
            delivered += 1
            continue
        failed += 1
        if isinstance(failure, DestinationFailed) and where is not None:
            down[where] = str(failure)
    return delivered, failed


def delete_finished(before, batch: int = 1000) -> int:
    """Remove delivered and failed messages older than `before` (for the purge), `batch` rows per
    statement, committing after each."""
    finished = and_(OutboxMessage.status.in_(("delivered", "failed")), OutboxMessage.created_at < before)
    return delete_in_batches(OutboxMessage, finished, batch)


# --- delivering at once, with a bounded wait ---------------------------------------------------
def deliver_enqueued(wait_seconds: float) -> list[threading.Thread]:
    """Try the messages this request or command enqueued (and committed), each in its own thread,
    waiting at most wait_seconds in total; unfinished ones carry on in the background, and
    whatever fails is retried by the worker. Returns the threads (tests join them)."""
    rows = g.pop("idp_outbox_enqueued", [])
    ids = [key[0] for key in (inspect(row).identity for row in rows) if key is not None][:MAX_INLINE]
    if not ids:
        return []
    app = current_app._get_current_object()
    threads = [threading.Thread(target=_deliver_one, args=(app, message_id), daemon=True,
                                name=f"idp-outbox-{message_id}") for message_id in ids]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + wait_seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return threads


def _deliver_one(app: Flask, message_id: int) -> None:
    with app.app_context():
        try:
            run_once(limit=1, ids=[message_id])
        except Exception:  # noqa: BLE001 - a thread must not die silently; the worker retries
            log.exception("delivering outbox message %s failed", message_id)


def init_outbox(app: Flask) -> None:
    """After a request committed messages, try them before answering (bounded by the setting)."""
    @app.after_request
    def _deliver_after_request(response):
        if g.get("idp_outbox_enqueued"):
            deliver_enqueued(current_app.config["IDP_SETTINGS"].outbox_wait_ms / 1000)
        return response


# --- the worker loop ---------------------------------------------------------------------------
def work(app: Flask, stop: threading.Event, *, poll_seconds: float,
         periodic: list[tuple[float, Callable[[], object]]] = ()) -> None:
    """Deliver due messages until `stop` is set; sleep poll_seconds when idle. `periodic` holds
    (interval, task) pairs run in the same loop (the session sweep). A database outage is logged
    and waited out, never fatal."""
    last_run = [float("-inf")] * len(periodic)
    while not stop.is_set():
        busy = False
        try:
            with app.app_context():
                for index, (interval, task) in enumerate(periodic):
                    if time.monotonic() - last_run[index] >= interval:
                        last_run[index] = time.monotonic()
                        task()
                delivered, failed = run_once(limit=1)  # one at a time: a stop is honoured between messages
                busy = delivered + failed > 0
        except Exception:  # noqa: BLE001 - keep the worker alive through database hiccups
            log.exception("outbox worker loop failed; retrying in %s s", poll_seconds)
        if not busy:
            stop.wait(poll_seconds)


def start_worker_thread(app: Flask, stop: threading.Event, *, poll_seconds: float,
                        periodic: list[tuple[float, Callable[[], object]]] = ()) -> threading.Thread:
    """The in-process worker (development): a daemon thread that runs until `stop` is set."""
    thread = threading.Thread(target=work, args=(app, stop), daemon=True, name="idp-outbox-worker",
                              kwargs={"poll_seconds": poll_seconds, "periodic": periodic})
    thread.start()
    return thread
