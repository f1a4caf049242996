// Threads: status, graph, last update; filters; live.
import { api } from "../api.js";
import { badge, clear, every, fmtTime, h, shortId } from "../dom.js";
import { filterForm, parseMetadata } from "./runs.js";

export async function render(main, _params, ctx) {
  let params = new URLSearchParams(location.search);
  const body = h("tbody");
  const error = h("p", { class: "error", role: "alert" });
  const load = async () => {
    const metadata = { ...(parseMetadata(params.get("metadata")) || {}) };
    if (params.get("graph")) metadata.graph_id = params.get("graph");
    let threads;
    const q = params.get("q");
    if (q) {  // an exact id first; thread ids are not searchable by prefix in the Agent Server API
      threads = await api("/threads/search", { method: "POST", body: { ids: [q], limit: 1 } });
      if (!threads.length) {
        const runs = await api("/runs/search", { method: "POST", body: { query: q, limit: 50 } });
        const ids = [...new Set(runs.map((r) => r.thread_id))];
        threads = ids.length ? await api("/threads/search", { method: "POST", body: { ids, limit: ids.length } }) : [];
      }
    } else {
      threads = await api("/threads/search", { method: "POST", body: {
        metadata: Object.keys(metadata).length ? metadata : null, status: params.get("status") || null,
        limit: 100, sort_by: "updated_at", sort_order: "desc" } });
    }
    error.textContent = "";
    clear(body).append(...threads.map((t) => h("tr", {},
      h("td", {}, h("a", { href: `/ui/threads/${encodeURIComponent(t.thread_id)}`, "data-link": true, title: t.thread_id }, shortId(t.thread_id))),
      h("td", {}, t.metadata?.graph_id || "—"),
      h("td", {}, badge(t.status)),
      h("td", {}, fmtTime(t.created_at)),
      h("td", {}, fmtTime(t.updated_at)))));
  };
  const form = filterForm(ctx, params, { statuses: ["idle", "busy", "interrupted", "error"], searchHint: "thread or run id" }, (next) => {
    params = next;
    history.replaceState(null, "", `/ui/threads${next.toString() ? "?" + next : ""}`);
    load().catch((err) => { error.textContent = err.message; });
  });
  form.querySelector("[name=tenant]")?.closest(".field")?.remove(); // threads/search scopes by key only
  main.append(h("h1", {}, "Threads"), form, error,
    h("div", { class: "scroll" }, h("table", { class: "grid" },
      h("caption", { class: "sr-only" }, "Threads"),
      h("thead", {}, h("tr", {}, ["Thread", "Graph", "Status", "Created", "Updated"].map((t) => h("th", { scope: "col" }, t)))),
      body)));
  await load().catch((err) => { error.textContent = err.message; });
  return every(3000, load);
}
