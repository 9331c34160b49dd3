"""The run dashboard (/baton/ui/) in a real browser against a real server, worker and redis:
a run's row turns completed, a waiting run is answered from its page, a run's page draws its
Gantt chart, its workflow's graph and its live event log, a failed run shows its traceback and
is retried.

Screenshots go to ``tmp_path`` on every run; with ``BATON_UPDATE_SCREENSHOTS=1`` they also
replace ``docs/img/dashboard-runs.png`` and ``docs/img/dashboard-run.png``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from app.client import Client
from tests.api_server import Dashboard
from tests.browser.conftest import screenshot
from workflows import StepFailedError

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.long]

TIMEOUT_MS = 30_000


@pytest.fixture
def page(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    context = browser.new_context(base_url=dashboard.url, viewport={"width": 1360, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    # the cookie a browser gets from POST /baton/login
    login = context.request.post("/baton/login", data={"token": dashboard.token})
    assert login.ok, login.text()
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert errors == []  # no uncaught script error on any page


def test_the_runs_page_shows_a_run_complete(
    client: Client, dashboard: Dashboard, page: Page, tmp_path: Path
) -> None:
    page.goto("/baton/ui/#/runs")
    expect(page.locator("#runs-table")).to_be_visible()
    boom = client.submit("Boom", label=f"page-{uuid.uuid4().hex[:6]}")
    waiting = client.submit("Approve", label="shown")
    handle = client.submit("AddTwice", a=20, b=1)
    row = page.locator(f"tr[data-run='{handle.run_id}']")
    expect(row).to_be_visible()  # polled in, whatever its state then
    expect(row).to_have_attribute("data-status", "completed")
    expect(row.locator(".badge")).to_have_text("completed")
    expect(row.get_by_role("link")).to_have_attribute("href", f"#/runs/{handle.run_id}")
    with pytest.raises(StepFailedError):
        boom.result(timeout=30)
    failed = page.locator(f"tr[data-run='{boom.run_id}']")
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed).to_contain_text("StepFailedError")
    asking = page.locator(f"tr[data-run='{waiting.run_id}']")
    expect(asking.locator(".badge")).to_have_text("waiting for input (Answer)")

    page.select_option("#status-filter", "completed")
    expect(page).to_have_url(re.compile(r"#/runs\?status=completed$"))
    expect(page.locator(f"tr[data-run='{boom.run_id}']")).to_have_count(0)
    expect(page.locator(f"tr[data-run='{handle.run_id}']")).to_be_visible()
    page.select_option("#status-filter", "")
    expect(page.locator(f"tr[data-run='{boom.run_id}']")).to_be_visible()
    screenshot(page, tmp_path, "dashboard-runs.png")
    waiting.cancel()


def test_a_waiting_run_is_answered_from_its_page(client: Client, page: Page) -> None:
    label = f"form-{uuid.uuid4().hex[:6]}"
    handle = client.submit("Approve", label=label)
    page.goto(f"/baton/ui/#/runs/{handle.run_id}")
    form = page.locator("#hitl-form")
    expect(form).to_be_visible()
    expect(form).to_contain_text("Answer")
    expect(page.locator("#hitl-type")).to_have_value("Answer")
    expect(page.locator("#event-log li[data-kind='input']")).to_be_visible()
    # a wrong field is refused, with the server's reason, and the run still waits
    page.fill("#hitl-data", '{"approved": "maybe"}')
    page.click("#hitl-send")
    expect(page.locator("#hitl-message")).to_contain_text("approved")
    assert handle.status() == "running"

    page.fill("#hitl-data", '{"approved": true}')
    page.click("#hitl-send")
    expect(page.locator("#run-status")).to_have_attribute("data-status", "completed")
    expect(page.locator("#run-result")).to_contain_text(label)
    expect(page.locator("#hitl-form")).to_have_count(0)
    expect(page.locator("#event-log li[data-kind='stop']")).to_be_visible()
    assert handle.result(timeout=10) == {"label": label, "approved": True}


def test_a_run_page_draws_its_gantt_chart_graph_and_log(
    client: Client, page: Page, tmp_path: Path
) -> None:
    handle = client.submit("AddTwice", a=2, b=3)
    assert handle.result(timeout=30) == 10
    page.goto(f"/baton/ui/#/runs/{handle.run_id}")
    expect(page.locator("#run-status")).to_have_attribute("data-status", "completed")
    expect(page.locator("#run-result")).to_contain_text("10")
    # two step invocations, each: its group row, its run, its tool call, its resume
    rows = page.locator("#gantt .gantt-row:not(.gantt-head)")
    expect(rows).to_have_count(8)
    expect(page.locator("#gantt .gantt-row.group")).to_have_count(2)
    expect(page.locator("#gantt .gantt-bar.outcome-suspended")).to_have_count(2)
    expect(page.locator("#gantt .gantt-bar.outcome-completed")).to_have_count(6)
    expect(rows.nth(0)).to_contain_text("AddTwice.first")
    expect(rows.nth(2)).to_contain_text("tool it_add")
    expect(rows.nth(2)).to_contain_text("itest")
    # each bar where its span ran: a width, and the second step's after the first one's
    bars = page.locator("#gantt .gantt-bar").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.x, r.width]; })"
    )
    assert len(bars) == 8 and all(width >= 1 for _, width in bars)
    assert bars[4][0] > bars[0][0]

    nodes = page.locator("#graph svg g.node")
    expect(nodes).to_have_count(4)
    expect(page.locator("#graph g.node[data-node='step:first']")).to_contain_text("first")
    expect(
        page.locator("#graph g.edge[data-from='step:first'][data-to='step:second']")
    ).to_contain_text("Summed")
    expect(page.locator("#event-log li[data-kind='stop']")).to_be_visible()
    expect(page.locator("#run-actions button")).to_have_count(0)  # completed: nothing to do
    screenshot(page, tmp_path, "dashboard-run.png")


def test_a_failed_run_shows_its_traceback_and_is_retried(client: Client, page: Page) -> None:
    label = f"retry-{uuid.uuid4().hex[:6]}"
    handle = client.submit("Boom", label=label)
    with pytest.raises(StepFailedError):
        handle.result(timeout=30)
    page.goto(f"/baton/ui/#/runs/{handle.run_id}")
    expect(page.locator("#run-status")).to_have_attribute("data-status", "failed")
    error = page.locator("#run-error")
    expect(error).to_contain_text("StepFailedError")
    expect(error.locator("pre.traceback").first).to_contain_text(f"ValueError: boom {label}")
    expect(page.locator("#gantt .gantt-bar.outcome-retry")).to_have_count(1)
    expect(page.locator("#event-log li[data-kind='retry']")).to_be_visible()
    page.click("#retry-run")
    expect(page).not_to_have_url(re.compile(handle.run_id))
    new_id = page.url.rsplit("/", 1)[-1]
    expect(page.locator("#run-status")).to_have_attribute("data-status", "failed")
    with pytest.raises(StepFailedError):
        client.get(new_id).result(timeout=30)


def test_the_queues_and_dead_letters_pages(page: Page) -> None:
    page.goto("/baton/ui/#/queues")
    itest = page.locator("#queues-table tr[data-queue='itest']")
    expect(itest).to_be_visible()
    expect(itest).to_contain_text("prefork")
    expect(page.locator("#queues-summary")).to_contain_text("live worker")
    page.click("a[data-nav='dead-letters']")
    expect(page.locator("#dead-letters")).to_contain_text(re.compile("dead letter|No dead letters"))
    page.click("a[data-nav='workflows']")
    page.get_by_role("link", name="AddTwice", exact=True).click()
    expect(page.locator("#graph svg g.node")).to_have_count(4)


def test_without_the_cookie_the_page_asks_for_the_token(
    browser: Browser, dashboard: Dashboard
) -> None:
    """The page's own files are served without the token; every API call answered 401 shows
    the token form, which logs in (an HttpOnly cookie) and reloads."""
    context = browser.new_context(base_url=dashboard.url)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto("/baton/ui/#/runs")
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("#runs-note")).to_contain_text("Sign in")
        page.fill("#login-token", "wrong")
        page.click("#login button")
        expect(page.locator("#login-error")).to_have_text("wrong token")
        page.fill("#login-token", dashboard.token)
        page.click("#login button")
        expect(page.locator("#runs-note")).not_to_contain_text("Sign in")
        expect(page.locator("#login")).to_be_hidden()
        assert any(c["name"] == "baton_token" for c in context.cookies())
    finally:
        context.close()
