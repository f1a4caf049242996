#!/usr/bin/env python
"""A long job behind `waypoint serve`: start it in the background, follow it, decide, resume.

Seed 002 builds this by hand (a FastAPI app, a job queue, an SSE endpoint, a status
endpoint, a resume endpoint). With `waypoint serve` it is the Agent Server API, driven here
by the official SDK against the research pipeline that
`examples/chat_service/langgraph.json` serves as the assistant `research`:

1. start: `runs.create` queues a background run and answers at once (status `pending`);
2. follow: `runs.join_stream` streams its progress over SSE (the pipeline's notes, node
   updates, the writer's tokens); events are stored, so joining late replays them all. Or
   `--poll`: ask `runs.get` and `threads.get_state` for the status and next node instead;
3. status: when the run is done the thread is `interrupted`, paused before `publish`;
4. decide and resume: the decision goes into the thread's state (`threads.update_state`)
   and a new background run continues from the checkpoint, without redoing the research.

    waypoint serve --config examples/chat_service/langgraph.json &
    python examples/server_client.py --approve
    python examples/server_client.py --poll --reject
    python examples/server_client.py --thread-id THREAD --approve --title "Tides, briefly"
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from langgraph_sdk import get_sync_client

DEFAULT_URL = os.environ.get("WAYPOINT_URL", "http://127.0.0.1:2024")
ASSISTANT = "research"
STREAM = ["updates", "custom", "messages-tuple"]


def describe(node: str, update: Any) -> str:
    """One line of what a node's update means, for people watching the job."""
    if not isinstance(update, dict):
        return ""
    if node == "plan":
        return f" ({len(update.get('subtasks', []))} subtasks)"
    if node == "research":
        failed = update.get("failed_research")
        if failed:
            return f" (FAILED: {failed[0]['error']})"
        return f" ({update['findings'][0]['subtask'].partition(':')[0]})"
    if node == "write":
        return f" (revision {update['revision_count']})" if update.get("revision_count") \
            else " (first draft)"
    if node == "review":
        return f" (score {update.get('score', 0):.2f}, {update.get('verdict')})"
    if node == "publish":
        return f" ({update.get('status')})"
    return ""


def follow(client: Any, thread_id: str, run_id: str) -> None:
    """Print the run's progress from its SSE stream. The models' tokens arrive as
    `messages` events; they are counted here (the writer's per draft), not shown."""
    print(f"[stream] GET /threads/{thread_id}/runs/{run_id}/stream")
    tokens = writer = 0
    for part in client.runs.join_stream(thread_id, run_id, stream_mode=STREAM):
        if part.event == "messages":
            tokens += 1
            writer += part.data[1].get("langgraph_node") == "write"
        elif part.event == "custom":
            print(f"    ... {part.data}")
        elif part.event == "updates":
            for node, update in part.data.items():
                if node == "__interrupt__":
                    print("  [paused] before publish: waiting for a person")
                    continue
                extra = f", {writer} tokens streamed" if node == "write" else ""
                writer = 0 if node == "write" else writer
                print(f"  [done] {node}{describe(node, update)}{extra}")
        elif part.event == "error":
            print(f"  [error] {part.data}")
    if tokens:
        print(f"  ({tokens} model tokens streamed in all)")


def poll(client: Any, thread_id: str, run_id: str, interval: float) -> None:
    """Print each change of the run's status and the thread's next node, until it ends."""
    print(f"[poll] GET /threads/{thread_id}/runs/{run_id} every {interval:g} s")
    shown = None
    while True:
        status = client.runs.get(thread_id, run_id)["status"]
        names = [n for n in client.threads.get_state(thread_id).get("next") or []
                 if not n.startswith("__")]
        upcoming = ", ".join(f"{n} x{names.count(n)}" if names.count(n) > 1 else n
                             for n in dict.fromkeys(names))
        if (status, upcoming) != shown:
            shown = (status, upcoming)
            print(f"  run {status}" + (f", next: {upcoming}" if upcoming else ""))
        if status not in ("pending", "running"):
            return
        time.sleep(interval)


def start(client: Any, thread_id: str, payload: dict[str, Any], args: argparse.Namespace) -> str:
    """Queue a background run (input, or None to continue), then follow or poll it."""
    run = client.runs.create(thread_id, ASSISTANT, stream_mode=STREAM, **payload)
    print(f"[start] background run {run['run_id']} queued (status {run['status']})")
    if args.poll:
        poll(client, thread_id, run["run_id"], args.interval)
    else:
        follow(client, thread_id, run["run_id"])
    final = client.runs.get(thread_id, run["run_id"])
    thread = client.threads.get(thread_id)
    print(f"[status] run {final['status']}; thread {thread['status']}")
    return str(final["status"])


def decide(args: argparse.Namespace, values: dict[str, Any]) -> dict[str, Any] | None:
    """The state update a person's decision makes, from the flags or the terminal."""
    if args.approve:
        return {"approval": "approved", **({"title": args.title} if args.title else {})}
    if args.reject:
        return {"approval": "rejected"}
    if sys.stdin is None or not sys.stdin.isatty():
        return None
    answer = input("Publish? [y / N / e = edit the title] ").strip().lower()
    if answer in ("y", "yes"):
        return {"approval": "approved"}
    if answer in ("e", "edit"):
        title = input(f"New title [{values['title']}]: ").strip() or values["title"]
        return {"approval": "approved", "title": title}
    return {"approval": "rejected"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="the server (default: %(default)s)")
    parser.add_argument("--api-key", default=os.environ.get("WAYPOINT_API_KEY"))
    parser.add_argument("--topic", default="grid-scale battery storage")
    parser.add_argument("--thread-id", default=None, help="continue this job's thread")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--approve", action="store_true", help="publish the draft")
    choice.add_argument("--reject", action="store_true", help="do not publish it")
    parser.add_argument("--title", default=None, help="with --approve: publish under this title")
    parser.add_argument("--poll", action="store_true",
                        help="poll the run's status instead of streaming its events")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    args = parser.parse_args(argv)
    if args.title and not args.approve:
        parser.error("--title goes with --approve")
    if hasattr(sys.stdout, "reconfigure"):  # progress lines in order, even through a pipe
        sys.stdout.reconfigure(line_buffering=True)

    client = get_sync_client(url=args.url, api_key=args.api_key)
    if args.thread_id:
        thread_id = args.thread_id
        print(f"thread {thread_id} on {args.url}")
    else:
        thread_id = client.threads.create(metadata={"job": "research"})["thread_id"]
        print(f"thread {thread_id} on {args.url}, topic {args.topic!r}")
        if start(client, thread_id, {"input": {"topic": args.topic}}, args) != "success":
            return 1

    state = client.threads.get_state(thread_id)
    values = state["values"]
    if state["next"] != ["publish"]:
        done = values.get("status")
        print(f"nothing to decide: the job is {done or 'not paused'} (next: {state['next']})")
        return 0 if done in ("published", "rejected") else 1
    print(f"  draft {values['title']!r}: review score {values['score']:.2f} after "
          f"{values['revision_count']} revision(s)")
    for gap in values.get("failed_research", []):
        print(f"  research gap: {gap['subtask']} ({gap['error']})")
    update = decide(args, values)
    if update is None:
        print(f"paused; the job waits on the server. Decide later with:\n  python "
              f"examples/server_client.py --url {args.url} --thread-id {thread_id} "
              f"--approve|--reject")
        return 0
    print(f"[decision] {update}: threads.update_state, then resume")
    client.threads.update_state(thread_id, update)
    if start(client, thread_id, {"input": None}, args) != "success":
        return 1
    values = client.threads.get_state(thread_id)["values"]
    if values.get("status") == "published":
        print(f"\n{values['report']}")
    else:
        print(f"not published: {values['title']!r} was rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
