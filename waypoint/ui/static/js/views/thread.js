// One thread: its graph with the path taken, the timeline of checkpoints, the state at
// any of them (with a diff), time travel, what it waits for, and its live run.
import { api, sse } from "../api.js";
import { append, badge, clear, fmtCost, h, nodeLabel, shortId, toast } from "../dom.js";
import { drawGraph } from "../widgets/graph.js";
import { validate } from "../widgets/jsonschema.js";
import { STREAM, statePanel } from "./statepanel.js";
import { pathOf, timelineTable } from "./timeline.js";

export async function render(main, [threadId], ctx) {
  const path = `/threads/${encodeURIComponent(threadId)}`;
  const abort = new AbortController();
  const cache = new Map();  // checkpoint id -> state
  let graph = null, schemas = null, selected = null, followHead = true, refreshTimer = null;
  const head = h("div", { class: "page-head" });
  const waiting = h("div", { id: "waiting" });
  const graphBox = h("section", { class: "card", "aria-labelledby": "graph-h" }, h("h2", { id: "graph-h" }, "Graph"));
  const timelineBox = h("section", { class: "card", "aria-labelledby": "timeline-h" }, h("h2", { id: "timeline-h" }, "Timeline"));
  const stateBox = h("div", { id: "state-box" });
  const liveLog = h("ol", { class: "live-log", id: "live-log" });
  const tokens = h("div", { class: "tokens", id: "tokens", "aria-live": "off" });
  const live = h("section", { class: "card", "aria-labelledby": "live-h" }, h("h2", { id: "live-h" }, "Live"),
    h("p", { class: "muted", id: "live-status", "aria-live": "polite" }, "Listening for runs on this thread…"),
    h("h3", {}, "Model tokens"), tokens, h("h3", {}, "Updates"), liveLog);
  const costBox = h("section", { class: "card", "aria-labelledby": "cost-h" }, h("h2", { id: "cost-h" }, "Cost of this thread"));
  main.append(head, waiting, h("div", { class: "thread-grid" },
    h("div", { class: "col" }, graphBox, timelineBox, costBox), h("div", { class: "col" }, stateBox, live)));

  async function stateAt(id) {
    if (!id) return null;
    if (!cache.has(id)) cache.set(id, await api(`${path}/state/${encodeURIComponent(id)}`));
    return cache.get(id);
  }

  async function load() {
    const [thread, timeline] = await Promise.all([api(path), api(`${path}/timeline`)]);
    const graphId = thread.metadata?.graph_id || timeline.graph_id;
    if (graphId && !graph) {
      [graph, schemas] = await Promise.all([api(`/assistants/${encodeURIComponent(graphId)}/graph`),
        api(`/assistants/${encodeURIComponent(graphId)}/schemas`)]);
    }
    append(clear(head), [h("h1", {}, "Thread ", h("code", { title: threadId }, shortId(threadId))),
      h("p", { class: "meta" }, badge(thread.status), " ", graphId ? `graph ${graphId}` : "no graph yet", " · ",
        h("span", { id: "thread-status", "data-status": thread.status }, thread.status), " · ", h("code", {}, threadId)),
      thread.status === "error" && thread.error ? h("p", { class: "error", id: "thread-error" },
        "Failed: ", typeof thread.error === "string" ? thread.error : `${thread.error.error ? thread.error.error + ": " : ""}${thread.error.message || JSON.stringify(thread.error)}`) : null]);
    if (graph) graphBox.replaceChildren(graphBox.firstChild, drawGraph(graph, pathOf({ ...timeline, status: thread.status })));
    timelineBox.replaceChildren(timelineBox.firstChild, timelineTable(timeline, selected, select));
    if (followHead || !timeline.checkpoints.some((c) => c.checkpoint_id === selected)) selected = timeline.head;
    await showState(timeline, graphId);
    timelineBox.replaceChildren(timelineBox.firstChild, timelineTable(timeline, selected, select));
    renderWaiting(thread, timeline, graphId);
    renderCost();
    load.timeline = timeline;
    load.graphId = graphId;
  }

  async function showState(timeline, graphId) {
    const row = timeline.checkpoints.find((c) => c.checkpoint_id === selected);
    if (!row) { stateBox.replaceChildren(h("p", { class: "muted" }, "No checkpoints yet.")); return; }
    const editing = stateBox.querySelector(".fork-editor:not([hidden])");
    if (editing && stateBox.dataset.checkpoint === row.checkpoint_id) return;  // keep an edit in progress
    const [state, parentState] = await Promise.all([stateAt(row.checkpoint_id), stateAt(row.parent_checkpoint_id)]);
    stateBox.dataset.checkpoint = row.checkpoint_id;
    stateBox.replaceChildren(statePanel({ threadId, graphId, schema: schemas?.state_schema, row, state, parentState, onDone: () => { followHead = true; refreshSoon(); } }));
  }

  function select(id) {
    selected = id;
    followHead = id === load.timeline?.head;
    showState(load.timeline, load.graphId).then(() => {
      timelineBox.replaceChildren(timelineBox.firstChild, timelineTable(load.timeline, selected, select));
      timelineBox.querySelector(`tr[data-checkpoint="${id}"] button`)?.focus();
    });
  }

  function renderWaiting(thread, timeline, graphId) {
    clear(waiting);
    const interrupts = Object.values(thread.interrupts || {}).flat();
    if (thread.status !== "interrupted") return;
    if (interrupts.length) {
      for (const item of interrupts) {
        const value = item.value;
        if (value && value.kind === "approval") {
          waiting.append(h("div", { class: "card notice" }, h("h2", {}, "Waiting for an approval"),
            h("p", {}, `Assignee: ${value.assignee || "anyone"}. `,
              h("a", { href: `/ui/inbox?thread=${encodeURIComponent(threadId)}`, "data-link": true }, "Decide it in the inbox"))));
          continue;
        }
        const box = h("textarea", { id: `resume-${item.id}`, class: "code", rows: 3 });
        box.value = '"yes"';
        const error = h("p", { class: "error", role: "alert" });
        waiting.append(h("form", { class: "card notice", onsubmit: async (event) => {
          event.preventDefault();
          let resume;
          try { resume = JSON.parse(box.value); } catch { error.textContent = "The answer must be JSON (a string in quotes)."; return; }
          try {
            await api(`${path}/runs`, { method: "POST", body: { assistant_id: graphId, command: { resume }, stream_mode: STREAM } });
            toast("Resumed"); refreshSoon();
          } catch (err) { error.textContent = err.message; }
        } }, h("h2", {}, "Waiting for an answer"), h("pre", { class: "code" }, JSON.stringify(value, null, 2)),
          h("label", { for: box.id }, "Answer (JSON)"), box, error, h("button", { type: "submit", class: "primary" }, "Resume")));
      }
      return;
    }
    const next = timeline.next || [];
    if (!next.length) return;
    const box = h("textarea", { id: "continue-json", class: "code", rows: 4, "aria-describedby": "continue-hint" });
    box.value = "{}";
    const error = h("div", { class: "error", role: "alert" });
    waiting.append(h("form", { class: "card notice", id: "breakpoint", onsubmit: async (event) => {
      event.preventDefault();
      error.textContent = "";
      let values;
      try { values = JSON.parse(box.value || "{}"); } catch { error.textContent = "Not valid JSON."; return; }
      const problems = schemas?.state_schema ? validate(values, schemas.state_schema) : [];
      if (problems.length) { error.append(h("p", {}, "Refused by the state schema:"), h("ul", {}, problems.map((p) => h("li", {}, p)))); return; }
      try {
        if (Object.keys(values).length) await api(`${path}/state`, { method: "POST", body: { values } });
        await api(`${path}/runs`, { method: "POST", body: { assistant_id: graphId, input: null, stream_mode: STREAM } });
        toast("Continued"); followHead = true; refreshSoon();
      } catch (err) { error.textContent = err.message; }
    } }, h("h2", {}, `Paused before ${next.map(nodeLabel).join(", ")}`),
      h("label", { for: "continue-json" }, "Values to set before continuing (JSON object, optional)"), box,
      h("small", { class: "hint", id: "continue-hint" }, 'A breakpoint (interrupt_before) waits for a person: set what the next node reads — for the research pipeline, {"approval": "approved"} — and continue.'),
      error, h("button", { type: "submit", class: "primary", id: "continue" }, "Update and continue")));
  }

  async function renderCost() {
    try {
      const found = await api("/usage", { query: { thread_id: threadId, group_by: ["node", "model"] } });
      const rows = found.groups.map((g) => h("tr", {}, h("td", {}, nodeLabel(g.node || "—")), h("td", {}, g.model || g.tool || "tool"),
        h("td", { class: "num" }, g.calls), h("td", { class: "num" }, g.input_tokens + g.output_tokens), h("td", { class: "num" }, fmtCost(g.cost_usd))));
      costBox.replaceChildren(costBox.firstChild, rows.length ? h("table", { class: "grid compact" },
        h("thead", {}, h("tr", {}, ["Node", "Model", "Calls", "Tokens", "Cost"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows), h("tfoot", {}, h("tr", {}, h("th", { scope: "row", colspan: 4 }, "Total"), h("td", { class: "num" }, fmtCost(found.total.cost_usd)))))
        : h("p", { class: "muted" }, "No model or tool calls recorded."));
    } catch (err) { costBox.replaceChildren(costBox.firstChild, h("p", { class: "error" }, err.message)); }
  }

  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => load().catch((err) => toast(err.message, "error")), 250);
  }

  function note(text) {
    liveLog.append(h("li", {}, text));
    while (liveLog.children.length > 50) liveLog.firstChild.remove();
  }

  async function follow() {
    const status = document.getElementById("live-status");
    while (!abort.signal.aborted) {
      try {
        for await (const event of sse(`${path}/stream`, { signal: abort.signal })) {
          const name = event.event.split("|")[0];
          if (name === "metadata") { status.textContent = `Run ${shortId(event.data.run_id)} is live.`; clear(tokens); refreshSoon(); }
          else if (name === "messages" && Array.isArray(event.data)) {
            const [chunk] = event.data;
            if (chunk && typeof chunk.content === "string") tokens.append(chunk.content);
          } else if (name === "updates" && event.data && typeof event.data === "object") {
            for (const [node, update] of Object.entries(event.data)) note(`${nodeLabel(node)}: ${update && typeof update === "object" ? Object.keys(update).join(", ") || "no change" : JSON.stringify(update)}`);
            refreshSoon();
          } else if (name === "values") refreshSoon();
          else if (name === "error") { note(`error: ${event.data.error}: ${event.data.message}`); refreshSoon(); }
          else if (name === "run_done") { status.textContent = `Run ${shortId(event.data.run_id)} ended: ${event.data.status}.`; cache.clear(); followHead = true; refreshSoon(); }
        }
      } catch (err) {
        if (abort.signal.aborted) return;
        console.warn("thread stream", err);
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  await load();
  follow();
  const poll = setInterval(() => { if (load.timeline && ["busy"].includes(document.getElementById("thread-status")?.dataset.status)) refreshSoon(); }, 3000);
  return () => { abort.abort(); clearInterval(poll); clearTimeout(refreshTimer); };
}
