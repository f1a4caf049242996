"""Make the README's screenshots of the web UI: `python -m tests.ui_screenshots [DIR]`.

Starts a real server on the UI test graphs, makes a few runs through the API (finished,
failed, paused at an approval, forked), opens the pages in Debian's Chromium and saves
docs/images/ui-runs.png, ui-thread.png (a thread with its state diff), ui-inbox.png and
ui-costs.png. Run it again after changing the UI; the tests do not depend on the images.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from server_harness import ServerProcess  # noqa: E402
from test_ui_browser import chromium, ui_server  # noqa: E402


def _seed(server: ServerProcess) -> str:
    """Runs of every kind; returns a forked pipeline thread to show."""
    with server.http() as http:
        def run(graph: str, values: dict) -> str:
            thread = http.post("/threads", json={}).json()["thread_id"]
            http.post(f"/threads/{thread}/runs/wait",
                      json={"assistant_id": graph, "input": values})
            return thread

        run("counter", {"count": 2})
        run("boom", {"count": 1})
        run("agent", {"messages": [{"role": "user", "content": "weather in Oslo?"}]})
        run("pipeline", {"topic": "wave energy", "count": 1})
        run("research", {"topic": "tidal power"})
        shown = run("pipeline", {"topic": "tides", "count": 2})
        history = http.get(f"/threads/{shown}/timeline").json()["checkpoints"]
        after_plan = next(c for c in history if c["nodes"] == ["plan"])
        fork = http.post(f"/threads/{shown}/state", json={
            "values": {"count": 3}, "checkpoint_id": after_plan["checkpoint_id"]}).json()
        http.post(f"/threads/{shown}/runs/wait", json={
            "assistant_id": "pipeline", "input": None,
            "checkpoint_id": fork["checkpoint"]["checkpoint_id"]})
        return shown


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, ui_server(Path(tmp)) as server, \
            chromium() as browser:
        thread = _seed(server)
        page = browser.new_page(viewport={"width": 1366, "height": 820}, base_url=server.url)
        page.goto("/ui/runs")
        page.locator("#runs-table tbody tr").first.wait_for()
        page.screenshot(path=str(out / "ui-runs.png"))
        page.goto(f"/ui/threads/{thread}")
        row = page.locator("#timeline tbody tr[data-branch='1']").first
        row.wait_for()
        row.get_by_role("button").click()
        page.locator(".diff").wait_for()
        page.screenshot(path=str(out / "ui-thread.png"), full_page=True)
        page.goto("/ui/inbox")
        page.locator("[data-approval]").first.wait_for()
        page.screenshot(path=str(out / "ui-inbox.png"))
        page.goto("/ui/costs")
        page.locator(".cost-grid").wait_for()
        page.screenshot(path=str(out / "ui-costs.png"))
        page.close()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "docs" / "images")
