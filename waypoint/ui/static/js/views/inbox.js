// The approvals inbox: pending decisions across threads, by assignee; a form from each
// approval's JSON schema; the deadline counting down; the decision audit once decided.
import { api } from "../api.js";
import { append, badge, clear, every, field, fmtCountdown, fmtTime, h, shortId, toast } from "../dom.js";
import { schemaForm } from "../widgets/schemaform.js";
import { tree } from "../widgets/tree.js";
import { STREAM } from "./statepanel.js";

const LABELS = { approve: "Approve", reject: "Reject", edit: "Edit and approve", respond: "Respond" };

function card(approval, reload) {
  const id = approval.approval_id;
  const title = h("h2", { id: `ap-${id}` }, `${approval.graph_id || "graph"} · ${approval.node}`);
  const meta = h("p", { class: "meta" }, badge(approval.status), " thread ",
    h("a", { href: `/ui/threads/${encodeURIComponent(approval.thread_id)}`, "data-link": true }, shortId(approval.thread_id)),
    ` · assignee ${approval.assignee || "anyone"} · asked ${fmtTime(approval.created_at)}`);
  const countdown = approval.deadline ? h("p", { class: "deadline", "data-deadline": approval.deadline },
    h("span", { class: "sr-only" }, "Deadline: "), fmtCountdown(approval.deadline), ` (${fmtTime(approval.deadline)}, then ${approval.on_timeout})`) : null;
  const body = h("article", { class: "card approval", "aria-labelledby": `ap-${id}`, "data-approval": id },
    title, meta, countdown, h("h3", {}, "Request"), h("div", { class: "json-tree" }, tree(approval.request)));
  if (approval.status !== "pending") {
    const d = approval.decision || {};
    body.append(h("h3", {}, "Decision"), h("dl", { class: "audit" },
      h("dt", {}, "Action"), h("dd", { class: "decision-action" }, d.action || approval.status),
      h("dt", {}, "By"), h("dd", {}, d.by || "—"),
      h("dt", {}, "When"), h("dd", {}, fmtTime(approval.decided_at)),
      h("dt", {}, "Comment"), h("dd", {}, d.comment || "—"),
      d.edits ? [h("dt", {}, "Edits"), h("dd", {}, h("div", { class: "json-tree" }, tree(d.edits)))] : null,
      approval.escalations ? [h("dt", {}, "Escalations"), h("dd", {}, String(approval.escalations))] : null));
    return body;
  }
  const editable = approval.actions.some((a) => a === "edit" || a === "respond");
  const form = editable ? schemaForm(approval.response_schema || {}, { legend: "Edits (for “edit”)" }) : null;
  const comment = h("textarea", { name: "comment", rows: 2 });
  const error = h("div", { class: "error", role: "alert" });
  const decide = async (action) => {
    error.textContent = "";
    let edits = null;
    if (action === "edit" || action === "respond") {
      const { value, problems } = form.read();
      if (problems.length) { error.append(h("p", {}, "The edits do not fit the schema:"), h("ul", {}, problems.map((p) => h("li", {}, p)))); return; }
      edits = value;
    }
    try {
      const answer = await api(`/approvals/${encodeURIComponent(id)}/decide`, { method: "POST", query: { thread_id: approval.thread_id },
        body: { action, comment: comment.value.trim() || null, edits, stream_mode: STREAM } });
      toast(`${LABELS[action] || action}: run ${answer.run.run_id.slice(0, 8)} resumes the thread`);
      reload();
    } catch (err) { error.textContent = `Refused: ${err.message}`; }
  };
  body.append(h("form", { class: "decide", onsubmit: (e) => e.preventDefault(), "aria-label": "Decision" },
    form ? form.element : null, field("Comment", comment), error,
    h("div", { class: "actions" }, approval.actions.map((action) => h("button", { type: "button",
      class: action === "approve" ? "primary" : action === "reject" ? "danger" : "",
      "data-action": action, onclick: () => decide(action) }, LABELS[action] || action)))));
  return body;
}

export async function render(main, _params, ctx) {
  const params = new URLSearchParams(location.search);
  const assignee = h("input", { name: "assignee", value: params.get("assignee") || "", placeholder: "anyone" });
  const status = h("select", { name: "status" }, ["pending", "decided", "expired", "cancelled", "all"].map((st) =>
    h("option", { value: st, selected: (params.get("status") || "pending") === st }, st)));
  const list = h("div", { class: "approvals", id: "approvals" });
  const paused = h("div", { id: "paused" });
  const error = h("p", { class: "error", role: "alert" });
  let cards = new Map(), shown = null;  // approval id + status -> its card, kept while unchanged
  const load = async (force = false) => {
    const approvals = await api("/approvals", { query: { status: status.value, assignee: assignee.value.trim() || null,
      thread_id: params.get("thread") || null, limit: 200 } });
    const next = new Map();
    for (const a of approvals) {  // a card someone is typing in is never rebuilt
      const key = `${a.approval_id}:${a.status}`;
      next.set(key, (!force && cards.get(key)) || card(a, () => load(true)));
    }
    const order = [...next.keys()].join(",");
    if (force || order !== shown) {  // the same cards in the same order: leave the page alone
      shown = order;
      clear(list).append(...(approvals.length ? [...next.values()]
        : [h("p", { class: "muted" }, "Nothing waiting. Approvals that runs ask for with approve() appear here.")]));
    }
    cards = next;
    const threads = await api("/threads/search", { method: "POST", body: { status: "interrupted", limit: 50 } });
    const asking = new Set(approvals.map((a) => a.thread_id));
    const others = threads.filter((t) => !asking.has(t.thread_id) && !Object.values(t.interrupts || {}).flat().some((i) => i.value?.kind === "approval"));
    append(clear(paused), [others.length ? h("section", { class: "card" }, h("h2", {}, "Other threads waiting for a person"),
      h("p", { class: "muted" }, "Paused at interrupt() or at a breakpoint: answer them on the thread's page."),
      h("ul", {}, others.map((t) => h("li", {}, h("a", { href: `/ui/threads/${encodeURIComponent(t.thread_id)}`, "data-link": true }, shortId(t.thread_id)),
        ` · ${t.metadata?.graph_id || "?"} · updated ${fmtTime(t.updated_at)}`)))) : null]);
    error.textContent = "";
  };
  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); apply(); } },
    field("Assignee", assignee), field("Status", status), h("button", { type: "submit" }, "Apply"));
  const apply = () => {
    const next = new URLSearchParams();
    if (assignee.value.trim()) next.set("assignee", assignee.value.trim());
    if (status.value !== "pending") next.set("status", status.value);
    if (params.get("thread")) next.set("thread", params.get("thread"));
    history.replaceState(null, "", `/ui/inbox${next.toString() ? "?" + next : ""}`);
    load(true).catch((err) => { error.textContent = err.message; });
  };
  status.addEventListener("change", apply);
  append(main, [h("h1", {}, "Approvals"), form,
    params.get("thread") ? h("p", {}, `Thread ${shortId(params.get("thread"))} only · `, h("a", { href: "/ui/inbox", "data-link": true }, "show all")) : null,
    error, list, paused]);
  await load(true).catch((err) => { error.textContent = err.message; });
  const stopPoll = every(3000, () => load());
  const tick = setInterval(() => {
    for (const el of list.querySelectorAll("[data-deadline]")) el.childNodes[1].textContent = fmtCountdown(el.dataset.deadline);
  }, 1000);
  return () => { stopPoll(); clearInterval(tick); };
}
