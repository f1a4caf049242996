// A thread's checkpoints as a timeline (GET /threads/{id}/timeline): step, node, duration,
// retries, errors, cost, and the branch each is on; a row selects a checkpoint.
import { fmtCost, fmtDuration, h, nodeLabel } from "../dom.js";

/** "research ×4" for a fan-out, not the name four times. */
export function nodesText(nodes) {
  const counts = new Map();
  for (const n of nodes) counts.set(n, (counts.get(n) || 0) + 1);
  return [...counts].map(([n, c]) => (c > 1 ? `${nodeLabel(n)} ×${c}` : nodeLabel(n))).join(", ");
}

export function timelineTable(timeline, selected, onSelect) {
  const onPath = new Set(timeline.head_path);
  const firstOfBranch = new Set();
  const seen = new Set();
  for (const row of timeline.checkpoints) {
    if (!seen.has(row.branch)) { seen.add(row.branch); if (row.branch > 0) firstOfBranch.add(row.checkpoint_id); }
  }
  const rows = timeline.checkpoints.map((row) => {
    const isSel = row.checkpoint_id === selected;
    const retries = row.retries.length;
    const errors = row.errors.length;
    const branchCell = row.branch === 0 ? "main"
      : firstOfBranch.has(row.checkpoint_id) ? `→ branch ${row.branch} (fork)` : `branch ${row.branch}`;
    return h("tr", {
      class: [isSel ? "selected" : "", onPath.has(row.checkpoint_id) ? "" : "off-path",
        row.checkpoint_id === timeline.head ? "head" : "", errors ? "has-error" : ""].filter(Boolean).join(" "),
      "data-checkpoint": row.checkpoint_id, "data-branch": row.branch,
    },
      h("td", {}, h("button", { type: "button", class: "row-select", "aria-pressed": String(isSel),
        "aria-label": `Show the state at step ${row.step} (${nodesText(row.nodes)})`,
        onclick: () => onSelect(row.checkpoint_id) }, String(row.step ?? "—"))),
      h("td", {}, nodesText(row.nodes) || "—",
        row.checkpoint_id === timeline.head ? h("span", { class: "pill" }, "head") : null,
        row.interrupts ? h("span", { class: "pill warn" }, "waiting") : null),
      h("td", { class: "num" }, fmtDuration(row.duration_s)),
      h("td", { class: "num" }, retries ? h("details", { class: "retries" }, h("summary", {}, String(retries)),
        h("ul", {}, row.retries.map((r) => h("li", {}, `attempt ${r.attempt ?? "?"}: ${r.error || JSON.stringify(r)}`)))) : ""),
      h("td", { class: errors ? "error-cell" : "" }, errors ? row.errors.map((e) => `${nodeLabel(e.node)}: ${e.error}`).join("; ") : ""),
      h("td", { class: "num" }, row.usage.calls ? fmtCost(row.usage.cost_usd) : ""),
      h("td", { class: "branch" }, branchCell));
  });
  return h("div", { class: "scroll timeline" }, h("table", { class: "grid compact", id: "timeline" },
    h("caption", {}, `Checkpoints (${timeline.checkpoints.length}; ${timeline.branches} branch${timeline.branches > 1 ? "es" : ""}). Rows off the current path are dimmed.`),
    h("thead", {}, h("tr", {}, ["Step", "Node", "Duration", "Retries", "Errors", "Cost", "Branch"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows)));
}

/** Nodes visited and edges taken along the current path, for the graph. */
export function pathOf(timeline) {
  const byId = new Map(timeline.checkpoints.map((c) => [c.checkpoint_id, c]));
  const visited = new Set(["__start__"]);
  const taken = new Set();
  let last = ["__start__"];
  for (const id of timeline.head_path) {
    const row = byId.get(id);
    const nodes = row.nodes.filter((n) => !["__input__", "__update__", "__fork__", "__start__"].includes(n));
    if (!nodes.length) continue;
    for (const n of nodes) { visited.add(n); for (const p of last) taken.add(`${p}>${n}`); }
    last = nodes;
  }
  const next = new Set(timeline.next || []);
  const head = byId.get(timeline.head);
  const failed = new Set((head?.errors || []).filter((e) => !e.handled).map((e) => e.node));
  if (!next.size && timeline.checkpoints.length && timeline.status !== "busy") {
    visited.add("__end__");
    for (const p of last) taken.add(`${p}>__end__`);
  }
  return { visited, taken, next, failed };
}
