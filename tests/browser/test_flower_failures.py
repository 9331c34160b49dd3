"""Operations you can trust: Flower's tasks page, filtered to FAILURE, shows a failing step,
and its task page shows the user's traceback, in a real browser against real processes.

Screenshots go to ``tmp_path`` on every run; with ``BATON_UPDATE_SCREENSHOTS=1`` they also
replace the ones in ``docs/img`` that the README links.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from app.client import Client
from tests.browser.conftest import screenshot
from tests.flower import Flower
from tests.harness import eventually
from workflows import StepFailedError

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.long]

TIMEOUT_MS = 30_000


@pytest.fixture
def page(browser: Browser, flower: Flower) -> Iterator[Page]:
    context = browser.new_context(
        http_credentials={"username": flower.user, "password": flower.password},
        viewport={"width": 1280, "height": 720},
    )
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


def flower_tasks(flower: Flower, state: str) -> dict[str, dict[str, object]]:
    tasks: dict[str, dict[str, object]] = flower.api(f"/api/tasks?state={state}")
    return tasks


def test_flower_filtered_by_failure_shows_the_failing_step_and_its_traceback(
    client: Client, flower: Flower, page: Page, tmp_path: Path
) -> None:
    label = f"br-{uuid.uuid4().hex[:6]}"
    ok = client.submit("AddTwice", a=2, b=3)  # SUCCESS rows the filter must hide
    boom = client.submit("Boom", label=label)
    assert ok.result(timeout=30) == 10
    with pytest.raises(StepFailedError):
        boom.result(timeout=30)
    # Flower has the events (the page does not refresh itself): a failed and a succeeded task
    failed = eventually(
        lambda: {u: t for u, t in flower_tasks(flower, "FAILURE").items() if boom.run_id in str(t)},
        what="Flower knows the failed attempt",
    )
    eventually(lambda: flower_tasks(flower, "SUCCESS"), what="Flower knows succeeded tasks")
    assert len(failed) == 1
    (failed_id,) = failed

    # the tasks page, filtered to FAILURE with Flower's own URL parameter
    page.goto(f"{flower.url}/tasks?state=FAILURE")
    expect(page.locator(".task-state-filter[data-task-state='FAILURE']")).to_have_attribute(
        "aria-pressed", "true"
    )
    rows = page.locator("#tasks-table tbody tr")
    row = rows.filter(has_text="Boom.explode")
    expect(row).to_have_count(1)
    expect(row).to_have_id(failed_id)
    expect(row.locator(".badge")).to_have_text("FAILURE")
    expect(rows).to_have_count(1)  # the retried attempt and the succeeded steps are filtered out
    expect(page.locator("#tasks-table tbody .badge", has_text="SUCCESS")).to_have_count(0)
    expect(page.locator("#tasks-table tbody .badge", has_text="RETRY")).to_have_count(0)
    screenshot(page, tmp_path, "flower-failures.png")

    # its task page: the exception names the run and attempt, the traceback the user's frame
    row.locator(f"a[href$='/task/{failed_id}']").click()
    expect(page).to_have_url(f"{flower.url}/task/{failed_id}")
    expect(page.locator("#task-page .badge").first).to_have_text("FAILURE")
    expect(page.locator("#task-page")).to_contain_text(
        f"ValueError: boom {label} (run {boom.run_id}, step Boom.explode, attempt 2)"
    )
    traceback = page.locator(".task-traceback-copy + pre.detail-code")
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text("in explode")
    expect(traceback).to_contain_text(f"ValueError: boom {label}")
    screenshot(page, tmp_path, "flower-traceback.png")
