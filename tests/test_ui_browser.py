"""The web UI in a real browser: Playwright driving Debian's Chromium (by path, never a
downloaded browser) against a real `waypoint serve` on a free port.

What a person does is what the tests do: a run started from the form appears in the run
list; a run paused at an approval appears in the inbox, is approved there (with an edit
checked against the approval's schema) and the thread ends; a fork with an edited value
makes a new branch, and an edit the state schema refuses is refused with its error; the
research-pipeline demo, paused before `publish`, is approved from its thread page; with
API keys the page asks for one and shows only the key's tenant. Screenshots go to the
test's temporary directory. Skipped when Chromium is absent, except under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import ServerProcess, wait_until
from store_backends import IN_CI

HERE = Path(__file__).parent
CHROMIUM = os.environ.get("WAYPOINT_CHROMIUM", "/usr/bin/chromium")
UI_GRAPHS = {name: f"{HERE / 'ui_graphs.py'}:{name}" for name in ("pipeline", "counter",
                                                                   "flaky", "research")}
TIMEOUT_MS = 20_000  # auto-waiting bound for a slow, shared machine; never a timing check


def chromium_or_skip() -> str:
    if shutil.which(CHROMIUM) or Path(CHROMIUM).exists():
        return CHROMIUM
    if IN_CI:
        pytest.fail(f"Chromium is not at {CHROMIUM} (CI=true: not skipping)")
    pytest.skip(f"Chromium is not at {CHROMIUM}")


@contextlib.contextmanager
def ui_server(workdir: Path, **options: Any) -> Iterator[ServerProcess]:
    """A real server serving the UI test graphs (and the server tests' graphs)."""
    server = ServerProcess(workdir, graphs=UI_GRAPHS, **options).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    path = chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as found:
        yield found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ui_server(tmp_path_factory.mktemp("ui-server")) as running:
        yield running


@pytest.fixture
def page(browser: Any, server: ServerProcess, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900},
                                  base_url=server.url)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda exc: problems.append(str(exc)))
    yield opened
    opened.screenshot(path=str(tmp_path / "last.png"), full_page=True)
    context.close()
    assert not problems, f"errors in the page: {problems}"


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _run(server: ServerProcess, graph: str, values: dict[str, Any]) -> dict[str, Any]:
    """A thread with one finished (or paused) run of `graph`, made through the API."""
    with server.http() as http:
        thread = http.post("/threads", json={}).json()
        http.post(f"/threads/{thread['thread_id']}/runs/wait",
                  json={"assistant_id": graph, "input": values}).raise_for_status()
        return thread


def _state(server: ServerProcess, thread_id: str) -> dict[str, Any]:
    with server.http() as http:
        return http.get(f"/threads/{thread_id}/state").json()


def test_a_run_started_from_the_form_appears_in_the_run_list(page: Any, server: ServerProcess,
                                                             tmp_path: Path) -> None:
    expect = _expect()
    page.goto("/ui/start")
    page.get_by_label("Assistant").select_option(label="counter")
    expect(page.locator("#input-form legend")).to_have_text("Input of counter")
    page.get_by_label("Count").fill("5")
    page.get_by_label("Topic").fill("from the browser")
    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(r"/ui/threads/[^/]+$"))
    thread_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#thread-status")).to_have_attribute("data-status", "idle")
    assert _state(server, thread_id)["values"]["count"] == 12  # (5 + 1) * 2

    page.get_by_role("link", name="Runs", exact=True).click()
    row = page.locator("#runs-table tbody tr", has=page.locator(f"code[title='{thread_id}']"))
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("success")
    expect(row).to_contain_text("counter")

    # the list is live: a run made elsewhere shows up without a reload
    made = _run(server, "counter", {"count": 1})
    expect(page.locator(f"#runs-table code[title='{made['thread_id']}']")).to_have_count(1)
    page.get_by_label("Graph").select_option("pipeline")
    expect(page.locator(f"#runs-table code[title='{made['thread_id']}']")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "runs.png"))


def test_an_approval_is_decided_in_the_inbox_and_the_run_resumes(page: Any,
                                                                 server: ServerProcess,
                                                                 tmp_path: Path) -> None:
    expect = _expect()
    thread = _run(server, "pipeline", {"topic": "tides", "count": 2})
    with server.http() as http:
        (approval,) = http.get("/approvals", params={"thread_id": thread["thread_id"]}).json()
    page.goto("/ui/inbox?assignee=editor")
    card = page.locator(f"[data-approval='{approval['approval_id']}']")
    expect(card).to_be_visible()
    expect(card).to_contain_text("Tides are steady")  # the request payload
    expect(card.locator(".deadline")).to_contain_text("left")  # the countdown
    page.locator("#approvals").screenshot(path=str(tmp_path / "inbox.png"))

    # an edit the approval's schema refuses is not sent
    card.get_by_label("Title").fill("ab")
    card.get_by_role("button", name="Edit and approve").click()
    expect(card.get_by_role("alert")).to_contain_text("title: should have at least 3")
    assert http_status(server, thread["thread_id"]) == "interrupted"

    card.get_by_label("Title").fill("Tidal power, briefly")
    card.get_by_label("Comment").fill("good to go")
    card.get_by_role("button", name="Edit and approve").click()
    expect(card).to_have_count(0)  # decided: gone from the pending inbox

    page.goto(f"/ui/threads/{thread['thread_id']}")
    expect(page.locator("#thread-status")).to_have_attribute("data-status", "idle")
    expect(page.locator("#timeline")).to_contain_text("publish")
    values = _state(server, thread["thread_id"])["values"]
    assert values["verdict"] == "edit" and values["title"] == "Tidal power, briefly"
    with server.http() as http:
        runs = http.get(f"/threads/{thread['thread_id']}/runs").json()
    assert [r["status"] for r in runs] == ["success", "success"]

    page.goto("/ui/inbox?status=decided")  # the decision audit
    decided = page.locator(f"[data-approval='{approval['approval_id']}']")
    expect(decided.locator(".decision-action")).to_have_text("edit")
    expect(decided).to_contain_text("good to go")


def http_status(server: ServerProcess, thread_id: str) -> str:
    with server.http() as http:
        return http.get(f"/threads/{thread_id}").json()["status"]


def _open_checkpoint_after(page: Any, node: str) -> None:
    expect = _expect()
    row = page.locator("#timeline tbody tr", has=page.locator("td:nth-child(2)",
                                                              has_text=re.compile(f"^{node}")))
    expect(row).to_have_count(1)
    row.get_by_role("button").click()
    expect(page.locator("#state-title")).to_contain_text(f"after {node}")


def test_a_fork_with_an_edited_value_makes_a_new_branch(page: Any, server: ServerProcess,
                                                        tmp_path: Path) -> None:
    expect = _expect()
    thread = _run(server, "counter", {"count": 1})
    thread_id = thread["thread_id"]
    page.goto(f"/ui/threads/{thread_id}")
    expect(page.locator("svg.graph g.node.visited[data-node='double']")).to_have_count(1)
    _open_checkpoint_after(page, "count")
    expect(page.locator(".diff")).to_contain_text("count")  # the diff against the parent
    page.get_by_role("button", name="Replay from here").click()  # replay: a branch of its own
    expect(page.locator("#timeline tbody tr[data-branch='1']")).to_have_count(2)

    _open_checkpoint_after(page, "count")
    page.get_by_role("button", name="Fork: edit state…").click()
    editor = page.get_by_label("State for the new branch (JSON)")
    editor.fill(editor.input_value().replace('"count": 2', '"count": 10'))
    page.get_by_role("button", name="Fork and run").click()

    expect(page.locator("#timeline tbody tr[data-branch='2']")).to_have_count(2)
    wait_until(lambda: _state(server, thread_id)["values"].get("count") == 20)
    expect(page.locator("#state-tree")).to_contain_text("20")
    expect(page.locator("#timeline tbody tr.head")).to_have_attribute("data-branch", "2")
    page.screenshot(path=str(tmp_path / "fork.png"), full_page=True)
    with server.http() as http:
        timeline = http.get(f"/threads/{thread_id}/timeline").json()
    assert timeline["branches"] == 3
    branches = [[c["nodes"] for c in timeline["checkpoints"] if c["branch"] == b] for b in (1, 2)]
    assert branches == [[["__fork__"], ["double"]], [["__update__"], ["double"]]]


def test_an_edit_the_state_schema_refuses_is_refused_with_its_error(page: Any,
                                                                    server: ServerProcess
                                                                    ) -> None:
    expect = _expect()
    thread_id = _run(server, "counter", {"count": 3})["thread_id"]
    with server.http() as http:
        before = len(http.get(f"/threads/{thread_id}/history", params={"limit": 100}).json())
    page.goto(f"/ui/threads/{thread_id}")
    _open_checkpoint_after(page, "count")
    page.get_by_role("button", name="Fork: edit state…").click()
    editor = page.get_by_label("State for the new branch (JSON)")
    editor.fill(editor.input_value().replace('"count": 4', '"count": "many"'))
    page.get_by_role("button", name="Fork and run").click()
    error = page.locator("#fork-error")
    expect(error).to_contain_text("does not fit the graph's state schema")
    expect(error).to_contain_text('count: should be integer (got string "many")')
    with server.http() as http:
        after = len(http.get(f"/threads/{thread_id}/history", params={"limit": 100}).json())
    assert after == before  # nothing was written


def test_a_thread_shows_its_retries_and_where_it_failed(page: Any,
                                                       server: ServerProcess) -> None:
    expect = _expect()
    flaky = _run(server, "flaky", {"topic": "x"})["thread_id"]
    page.goto(f"/ui/threads/{flaky}")
    retries = page.locator("#timeline details.retries")
    expect(retries.locator("summary")).to_have_text("1")
    retries.locator("summary").click()
    expect(retries).to_contain_text("attempt 1: ConnectionError: source unavailable")

    failed = _run(server, "boom", {"count": 1})["thread_id"]  # a server test graph
    page.goto(f"/ui/threads/{failed}")
    expect(page.locator("#thread-error")).to_have_text("Failed: ValueError: kaboom")
    expect(page.locator("svg.graph g.node.failed[data-node='boom']")).to_have_count(1)
    expect(page.locator("#timeline")).to_contain_text("boom: ValueError('kaboom')")


def test_the_research_demo_is_approved_from_its_thread_page(page: Any,
                                                            server: ServerProcess) -> None:
    expect = _expect()
    thread_id = _run(server, "research", {"topic": "tidal power"})["thread_id"]
    assert _state(server, thread_id)["next"] == ["publish"]
    page.goto("/ui/inbox")  # the inbox points at threads paused at a breakpoint
    page.locator("#paused").get_by_role("link", name=re.compile(thread_id[:8])).click()
    expect(page.locator("#breakpoint")).to_contain_text("Paused before publish")
    page.get_by_label("Values to set before continuing").fill('{"approval": "approved"}')
    page.get_by_role("button", name="Update and continue").click()
    expect(page.locator("#thread-status")).to_have_attribute("data-status", "idle")
    values = _state(server, thread_id)["values"]
    assert values["status"] == "published" and values["report"].startswith("# ")


def test_with_api_keys_the_page_asks_for_one_and_shows_only_its_tenant(
        browser: Any, server: ServerProcess, tmp_path: Path) -> None:
    expect = _expect()
    keys = [{"key": "acme-key-1", "tenant": "acme"}, {"key": "ops-key-1", "tenant": "ops"}]
    with ui_server(tmp_path, settings={"api_keys": keys}) as keyed:
        made = {}
        for key, tenant in (("acme-key-1", "acme"), ("ops-key-1", "ops")):
            with keyed.http(key) as http:
                thread = http.post("/threads", json={}).json()
                http.post(f"/threads/{thread['thread_id']}/runs/wait", json={
                    "assistant_id": "counter", "input": {"count": 1}}).raise_for_status()
                made[tenant] = thread["thread_id"]
        with keyed.http() as anonymous:
            assert anonymous.get("/ui").status_code == 200  # the page itself needs no key
            assert anonymous.get("/ui/js/app.js").status_code == 200
            assert anonymous.post("/runs/search", json={}).status_code == 401
        context = browser.new_context(base_url=keyed.url)
        page = context.new_page()
        try:
            page.goto("/ui/runs")
            dialog = page.get_by_role("dialog", name="API key")
            expect(dialog).to_be_visible()
            page.get_by_label("Key", exact=True).fill("wrong")
            page.get_by_role("button", name="Use this key").click()
            expect(dialog.get_by_role("alert")).to_contain_text("refused")
            page.get_by_label("Key", exact=True).fill("acme-key-1")
            page.get_by_role("button", name="Use this key").click()
            expect(page.locator("#who")).to_contain_text("tenant acme")
            expect(page.locator(f"#runs-table code[title='{made['acme']}']")).to_have_count(1)
            expect(page.locator(f"#runs-table code[title='{made['ops']}']")).to_have_count(0)
            page.goto(f"/ui/threads/{made['ops']}")  # another tenant's thread: not found
            expect(page.get_by_role("alert")).to_contain_text("not found")
        finally:
            context.close()


def test_a_live_run_streams_its_updates_and_the_models_tokens(page: Any,
                                                              server: ServerProcess) -> None:
    expect = _expect()
    with server.http() as http:
        thread_id = http.post("/threads", json={}).json()["thread_id"]
        page.goto(f"/ui/threads/{thread_id}")
        expect(page.locator("#live-status")).to_contain_text("Listening")
        http.post(f"/threads/{thread_id}/runs", json={
            "assistant_id": "pipeline", "input": {"topic": "tides"},
            "stream_mode": ["values", "updates", "messages-tuple"]}).raise_for_status()
    expect(page.locator("#tokens")).to_have_text(
        "Tides are steady, predictable and quietly powerful.")
    expect(page.locator("#live-log")).to_contain_text("plan: notes, count")
    expect(page.locator("#thread-status")).to_have_attribute("data-status", "interrupted")
    expect(page.locator("svg.graph g.node.next[data-node='review']")).to_have_count(1)


UNLABELLED = """() => [...document.querySelectorAll("input, select, textarea, button")]
  .filter((el) => !el.closest("dialog:not([open])") && !el.closest("[hidden]"))
  .filter((el) => el.tagName === "BUTTON"
    ? !(el.textContent.trim() || el.getAttribute("aria-label"))
    : !(el.labels && el.labels.length) && !el.getAttribute("aria-label"))
  .map((el) => el.outerHTML.slice(0, 120))"""


def test_every_control_is_labelled_and_the_keyboard_reaches_it(page: Any,
                                                               server: ServerProcess) -> None:
    expect = _expect()
    thread_id = _run(server, "pipeline", {"topic": "labels"})["thread_id"]
    for path, ready in (("/ui/runs", "#runs-table tbody tr"), ("/ui/threads", "tbody tr"),
                        ("/ui/inbox", "[data-approval]"), ("/ui/start", "#input-form legend"),
                        ("/ui/costs", ".cost-grid"), (f"/ui/threads/{thread_id}", "#timeline")):
        page.goto(path)
        expect(page.locator(ready).first).to_be_visible()
        assert page.evaluate(UNLABELLED) == [], path
    # on the thread page: skip link first, then a checkpoint chosen with the keyboard only
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    first = page.locator("#timeline tbody tr").first.get_by_role("button")
    first.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#state-title")).to_contain_text("after input")
    page.get_by_role("button", name="Fork: edit state…").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("State for the new branch (JSON)")).to_be_focused()
