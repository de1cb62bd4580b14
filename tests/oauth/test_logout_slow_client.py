"""A client whose backchannel_logout_uri accepts connections and never answers (anyone can register
one) delays only its own logout tokens: the worker sends mail first, tries a first attempt before
any retry, and waits out that endpoint's timeout once per back-off step, not once per token. The
receiver is the loopback relying party of test_logout holding its answer; the clock is pinned."""
from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timezone

import pytest

from idp import clock, create_app, outbox
from idp.extensions import db
from idp.models import OutboxMessage
from idp.oauth.logout import KIND
from idp.users.recovery import deliver_reset_request, reset_request_payload
from tests.oauth.test_logout import Receiver, messages_for


@pytest.fixture(scope="module")
def quick(settings):
    """The app with IDP_BACKCHANNEL_LOGOUT_TIMEOUT at its least (1 s): each attempt at the held
    endpoint costs one second of the test's time."""
    return create_app(dataclasses.replace(settings, backchannel_logout_timeout=1))


@pytest.fixture
def held():
    """A receiver that takes each POST and holds its answer (until the test ends)."""
    receiver = Receiver()
    receiver.gate = threading.Event()
    yield receiver.start()
    receiver.stop()


@pytest.fixture
def healthy():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def ours(quick):
    """The ids of the outbox rows a test makes, deleted afterwards (no later pass waits on them)."""
    ids: list[int] = []
    yield ids
    with quick.app_context():
        db.session.execute(db.delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
        db.session.commit()


def queue_logout_tokens(app, client: dict, user: dict, count: int) -> list[int]:
    with app.test_request_context():
        rows = [outbox.enqueue(KIND, {"client_id": client["client_id"], "sid": f"sid-{n}", "user_id": user["id"],
                                      "sub": user["subject"], "reason": "logout"}) for n in range(count)]
        db.session.commit()
        return [row.id for row in rows]


def queue_reset_mail(app, user: dict) -> int:
    with app.test_request_context():  # what the worker does with a queued /forgot-password request
        deliver_reset_request(reset_request_payload(user["email"], "-", "en"), lambda _user, _network: True)
        db.session.commit()
        return db.session.scalar(db.select(OutboxMessage.id).where(OutboxMessage.kind == "mail")
                                 .order_by(OutboxMessage.id.desc()).limit(1))


def worker_pass(app, ids: list[int], limit: int = 1) -> tuple[int, int]:
    """What `idp worker` does each round (one message), over this test's rows only."""
    with app.app_context():
        return outbox.run_once(limit=limit, ids=ids)


def test_a_reset_mail_goes_out_first_although_logout_tokens_for_a_hanging_endpoint_were_queued_before_it(
        quick, make_client, make_user, mailbox, held, ours):
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0))
    client = make_client(backchannel_logout_uri=held.url)
    user = make_user()
    ours += queue_logout_tokens(quick, client, user, 3)
    ours.append(queue_reset_mail(quick, user))
    assert worker_pass(quick, ours) == (1, 0)  # the first round: the mail
    assert len(mailbox.to(user["email"])) == 1
    assert held.posts == []                    # nothing waited on the endpoint before it


def test_a_hanging_endpoint_costs_one_timeout_per_round_and_other_apps_go_first(
        quick, make_client, make_user, held, healthy, ours):
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0))
    slow = make_client(backchannel_logout_uri=held.url)
    user = make_user()
    ours += queue_logout_tokens(quick, slow, user, 3)
    assert worker_pass(quick, ours) == (0, 1)
    held.wait_for(posts=1)
    waiting = messages_for(quick, slow["client_id"])
    assert [m["attempts"] for m in waiting] == [1, 1, 1] and {m["status"] for m in waiting} == {"pending"}
    assert waiting[0]["last_error"] == "backchannel_logout_uri unreachable: ReadTimeout"
    assert all(m["last_error"].startswith("not tried: its destination had just failed") for m in waiting[1:])
    assert worker_pass(quick, ours) == (0, 0)  # none due: the endpoint was waited on once, not three times
    assert len(held.posts) == 1
    # Once they are due again, another app's fresh logout token goes before their retries.
    clock.set_now(clock.now() + outbox.retry_delay(1))
    other = make_client(backchannel_logout_uri=healthy.url)
    ours += queue_logout_tokens(quick, other, user, 1)
    assert worker_pass(quick, ours) == (1, 0)
    healthy.wait_for(answered=1)
    assert len(held.posts) == 1
    # The next round waits on the hanging endpoint once more, for all three.
    assert worker_pass(quick, ours, limit=20) == (0, 3)
    assert len(held.posts) == 2
    assert [m["attempts"] for m in messages_for(quick, slow["client_id"])] == [2, 2, 2]
