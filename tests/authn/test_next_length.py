"""A `next` longer than the login row can keep (LoginAttempt.next, 2048 characters) falls back to
the account page instead of failing the sign-in (PostgreSQL refuses the overlong value)."""
from __future__ import annotations

import pytest

from tests.authn.web import Web, field_value

KEPT = "/account?tab=" + "a" * (2048 - len("/account?tab="))


@pytest.mark.parametrize("target, lands_on", [(KEPT, KEPT), (KEPT + "a", "/account"), ("/account?" + "a" * 5000, "/account")],
                         ids=["2048", "2049", "5000"])
def test_a_next_longer_than_2048_falls_back_to_the_account_page(app, make_user, target, lands_on):
    user = make_user()
    web = Web(app)
    page = web.get("/login", query_string={"next": target})
    assert page.status_code == 200 and field_value(page.get_data(as_text=True), "next") == lands_on
    response = web.login(user["username"], user["password"], next_path=target)
    assert response.status_code == 303 and response.headers["Location"] == lands_on
    assert web.is_signed_in()
