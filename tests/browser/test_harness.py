"""The browser harness itself: it catches what the other browser tests rely on it to catch, and
it leaves asyncio usable for the rest of the suite."""
import asyncio

import pytest

pytestmark = pytest.mark.browser

VIOLATING_PAGE = ('<!doctype html><html lang="en"><title>probe</title><h1>probe</h1>'
                  '<script>console.log("inline")</script><p style="color: red">styled</p>')


def test_watch_reports_csp_violations_and_console_errors(browser_page, live_server):
    """A page on the provider's origin, served by the browser itself, under the provider's CSP."""
    page, watch = browser_page
    page.route(f"{live_server}/harness-probe", lambda route: route.fulfill(
        status=200, content_type="text/html", body=VIOLATING_PAGE,
        headers={"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'"}))
    page.goto("/harness-probe")
    with pytest.raises(AssertionError, match="CSP violations"):
        watch.assert_clean()
    assert {v["directive"] for v in watch.violations} >= {"script-src-elem", "style-src-attr"}
    assert any("Content Security Policy" in message for message in watch.console_errors)


def test_running_browser_leaves_asyncio_free_for_other_tests(_playwright):
    browser, _ = _playwright
    assert browser.is_connected()
    assert asyncio.run(asyncio.sleep(0, "ran")) == "ran"
