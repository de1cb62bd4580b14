"""Racing redemptions over real HTTP (issue 2 item 15): one code or one refresh token sent by
several threads at once gives at most one token response, and the grant ends revoked."""

from idp.models import Grant
from tests.helpers.races import at_once
from tests.helpers.rp import RelyingParty, verify_access_token, verify_id_token
from tests.oauth.flows import assert_token_error, authorize, redeem, refresh, tokens_for, userinfo, with_db

RACERS = 4
ROUNDS = 3


def _race(send) -> list:
    """Fire RACERS copies of one request together."""
    return at_once([send] * RACERS)


def _grant_revoked(app, gid: str) -> bool:
    return with_db(app, lambda db: db.session.scalar(db.select(Grant.revoked_at).where(Grant.id == gid))) is not None


def _latest_grant_of(app, client_id: str) -> str:
    from idp.models import Client

    return with_db(app, lambda db: db.session.scalar(
        db.select(Grant.id).join(Client, Grant.client_id == Client.id).where(Client.client_id == client_id)
        .order_by(Grant.created_at.desc()).limit(1)))


def test_concurrent_redemptions_of_one_code_succeed_at_most_once_and_revoke_the_grant(
        live_server, app, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    for _ in range(ROUNDS):
        rp = RelyingParty(live_server, client, scope="openid offline_access")
        _, response = authorize(live_server, user, rp)
        code = rp.callback_params(response)["code"]
        results = _race(lambda: redeem(live_server, client, code, rp.verifier))
        winners = [r for r in results if r.status_code == 200]
        assert len(winners) <= 1, [r.status_code for r in results]
        for loser in (r for r in results if r.status_code != 200):
            assert_token_error(loser, "invalid_grant")
        assert _grant_revoked(app, _latest_grant_of(app, client["client_id"]))
        for winner in winners:
            body = winner.json()
            verify_id_token(live_server, body["id_token"], client["client_id"], rp.nonce,
                            access_token=body["access_token"])
            assert _grant_revoked(app, verify_access_token(live_server, body["access_token"])["gid"])
            assert userinfo(live_server, body["access_token"]).status_code == 401
            assert_token_error(refresh(live_server, client, body["refresh_token"]), "invalid_grant")


def test_concurrent_uses_of_one_refresh_token_succeed_at_most_once_and_revoke_the_grant(
        live_server, app, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    for _ in range(ROUNDS):
        _, _, token = tokens_for(live_server, user, client, scope="openid offline_access")
        gid = verify_access_token(live_server, token["access_token"])["gid"]
        results = _race(lambda: refresh(live_server, client, token["refresh_token"]))
        winners = [r for r in results if r.status_code == 200]
        assert len(winners) <= 1, [r.status_code for r in results]
        for loser in (r for r in results if r.status_code != 200):
            assert_token_error(loser, "invalid_grant")
        assert _grant_revoked(app, gid)
        for winner in winners:
            assert userinfo(live_server, winner.json()["access_token"]).status_code == 401
            assert_token_error(refresh(live_server, client, winner.json()["refresh_token"]), "invalid_grant")
