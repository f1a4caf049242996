// Runs across threads: status, graph, start, duration, cost; filters in the URL; live.
import { api } from "../api.js";
import { badge, clear, every, field, fmtCost, fmtDuration, fmtTime, h, shortId } from "../dom.js";

const STATUSES = ["pending", "running", "success", "error", "timeout", "interrupted"];

/** key=value pairs (one per comma) as a metadata filter object; values parsed as JSON when they can be. */
export function parseMetadata(text) {
  const out = {};
  for (const part of (text || "").split(",").map((p) => p.trim()).filter(Boolean)) {
    const [key, ...rest] = part.split("=");
    const raw = rest.join("=").trim();
    let value = raw;
    try { value = JSON.parse(raw); } catch { /* a plain string */ }
    out[key.trim()] = value;
  }
  return Object.keys(out).length ? out : null;
}

export function filterForm(ctx, params, fields, onChange) {
  const graph = h("select", { name: "graph" }, h("option", { value: "" }, "any graph"),
    (ctx.info?.graphs || []).map((g) => h("option", { value: g, selected: params.get("graph") === g }, g)));
  const status = h("select", { name: "status" }, h("option", { value: "" }, "any status"),
    fields.statuses.map((st) => h("option", { value: st, selected: params.get("status") === st }, st)));
  const tenant = ctx.identity?.is_admin ? h("input", { name: "tenant", value: params.get("tenant") || "", placeholder: "every tenant" }) : null;
  const metadata = h("input", { name: "metadata", value: params.get("metadata") || "", placeholder: "key=value, …" });
  const query = h("input", { name: "q", type: "search", value: params.get("q") || "", placeholder: fields.searchHint });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter" },
    field("Search by id", query), field("Graph", graph), field("Status", status),
    tenant ? field("Tenant", tenant) : null, field("Metadata", metadata),
    h("button", { type: "submit" }, "Apply"));
  const read = () => {
    const next = new URLSearchParams();
    for (const [name, el] of [["q", query], ["graph", graph], ["status", status], ["tenant", tenant], ["metadata", metadata]]) {
      if (el && el.value.trim()) next.set(name, el.value.trim());
    }
    return next;
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); onChange(read()); });
  for (const el of [graph, status]) el.addEventListener("change", () => onChange(read()));
  return form;
}

export async function render(main, _params, ctx) {
  let params = new URLSearchParams(location.search);
  const body = h("tbody");
  const summary = h("p", { class: "muted", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert" });
  let limit = 100;
  const more = h("button", { type: "button", hidden: true, onclick: () => { limit = Math.min(limit + 100, 500); load(); } }, "Show more");
  const load = async () => {
    const metadata = parseMetadata(params.get("metadata"));
    const runs = await api("/runs/search", { method: "POST", body: {
      query: params.get("q") || null, graph_id: params.get("graph") || null,
      status: params.get("status") || null, tenant: params.get("tenant") || null, metadata, limit,
    } });
    error.textContent = "";
    clear(body).append(...runs.map((run) => h("tr", { "data-run": run.run_id, "data-status": run.status },
      h("td", {}, h("a", { href: `/ui/threads/${encodeURIComponent(run.thread_id)}`, "data-link": true, title: run.run_id }, shortId(run.run_id))),
      h("td", {}, h("code", { title: run.thread_id }, shortId(run.thread_id))),
      h("td", {}, run.graph_id),
      h("td", {}, badge(run.status)),
      h("td", {}, fmtTime(run.created_at)),
      h("td", { class: "num" }, fmtDuration(run.duration_s)),
      h("td", { class: "num" }, fmtCost(run.cost_usd)),
      ctx.identity?.is_admin ? h("td", {}, run.tenant) : null)));
    more.hidden = runs.length < limit || limit >= 500;
    summary.textContent = runs.length ? `${runs.length} run${runs.length > 1 ? "s" : ""}, newest first; updates live.` : "No runs match.";
  };
  const form = filterForm(ctx, params, { statuses: STATUSES, searchHint: "run or thread id" }, (next) => {
    params = next;
    history.replaceState(null, "", `/ui/runs${next.toString() ? "?" + next : ""}`);
    load().catch((err) => { error.textContent = err.message; });
  });
  main.append(h("h1", {}, "Runs"), form, error, summary,
    h("div", { class: "scroll" }, h("table", { class: "grid", id: "runs-table" },
      h("caption", { class: "sr-only" }, "Runs"),
      h("thead", {}, h("tr", {}, ["Run", "Thread", "Graph", "Status", "Started", "Duration", "Cost",
        ctx.identity?.is_admin ? "Tenant" : null].filter(Boolean).map((t) => h("th", { scope: "col" }, t)))),
      body)), more);
  await load().catch((err) => { error.textContent = err.message; });
  return every(2000, load);
}
