// Costs from the usage ledger (GET /usage): per model, per node, per run.
import { api } from "../api.js";
import { field, fmtCost, h, nodeLabel, shortId } from "../dom.js";

function bars(groups, label, keyCell) {
  const top = Math.max(0, ...groups.map((g) => g.cost_usd || 0));
  return h("section", { class: "card", "aria-label": label }, h("h2", {}, label),
    groups.length ? h("table", { class: "grid compact" },
      h("thead", {}, h("tr", {}, [label.replace("By ", "").replace(/^./, (c) => c.toUpperCase()), "Calls", "Tokens", "Cost", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, groups.map((g) => h("tr", {}, h("td", {}, keyCell(g)), h("td", { class: "num" }, g.calls),
        h("td", { class: "num" }, g.input_tokens + g.output_tokens), h("td", { class: "num" }, fmtCost(g.cost_usd)),
        h("td", { class: "bar-cell", "aria-hidden": "true" }, h("span", { class: "bar", style: null, "data-w": top ? Math.round(100 * (g.cost_usd || 0) / top) : 0 }))))))
      : h("p", { class: "muted" }, "No calls recorded."));
}

export async function render(main, _params, ctx) {
  const params = new URLSearchParams(location.search);
  const since = h("select", { name: "since" }, [["", "all time"], ["1h", "last hour"], ["24h", "last 24 hours"], ["7d", "last 7 days"]].map(([v, t]) =>
    h("option", { value: v, selected: (params.get("since") || "") === v }, t)));
  const graph = h("select", { name: "graph" }, h("option", { value: "" }, "any graph"),
    (ctx.info?.graphs || []).map((g) => h("option", { value: g, selected: params.get("graph") === g }, g)));
  const out = h("div", { class: "costs" });
  const load = async () => {
    const hours = { "1h": 1, "24h": 24, "7d": 168 }[since.value];
    const query = { since: hours ? new Date(Date.now() - hours * 3600e3).toISOString() : null };
    if (graph.value) {
      const assistants = await api("/assistants/search", { method: "POST", body: { graph_id: graph.value, limit: 50 } });
      query.assistant_id = assistants[0]?.assistant_id || "none";
    }
    const [byModel, byNode, byRun] = await Promise.all([["model"], ["node"], ["run_id", "thread_id"]].map((group_by) =>
      api("/usage", { query: { ...query, group_by } })));
    out.replaceChildren(
      h("p", { class: "total" }, "Total ", h("strong", {}, byModel.total.cost_usd === null ? "unknown" : fmtCost(byModel.total.cost_usd)), ` · ${byModel.total.calls} calls · ${byModel.total.input_tokens + byModel.total.output_tokens} tokens`,
        byModel.total.unpriced_calls ? ` · ${byModel.total.unpriced_calls} calls with no known price` : ""),
      h("div", { class: "cost-grid" },
        bars(byModel.groups, "By model", (g) => g.model || (g.tool ? `tool ${g.tool}` : "tools")),
        bars(byNode.groups, "By node", (g) => nodeLabel(g.node || "—")),
        bars(byRun.groups.slice(0, 50), "By run", (g) => h("a", { href: `/ui/threads/${encodeURIComponent(g.thread_id)}`, "data-link": true, title: g.run_id }, shortId(g.run_id)))));
    for (const bar of out.querySelectorAll(".bar")) bar.style.width = `${bar.dataset.w}%`;
  };
  const apply = () => {
    const next = new URLSearchParams();
    if (since.value) next.set("since", since.value);
    if (graph.value) next.set("graph", graph.value);
    history.replaceState(null, "", `/ui/costs${next.toString() ? "?" + next : ""}`);
    load();
  };
  since.addEventListener("change", apply);
  graph.addEventListener("change", apply);
  main.append(h("h1", {}, "Costs"), h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); apply(); } },
    field("Period", since), field("Graph", graph)), out);
  await load();
}
