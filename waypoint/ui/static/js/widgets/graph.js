// The graph (from GET /assistants/{id}/graph) drawn as layered SVG: the path the thread
// took, the current node and the next ones highlighted. A text summary goes with it.
import { h, nodeLabel, s } from "../dom.js";

const W = 124, H = 34, GAP_X = 28, GAP_Y = 40, PAD = 16;

/** Layers by longest path from the start, ignoring edges that close a loop. */
function layers(graph) {
  const ids = graph.nodes.map((n) => n.id);
  const out = new Map(ids.map((id) => [id, []]));
  for (const e of graph.edges) out.get(e.source)?.push(e.target);
  const back = new Set(), state = new Map();
  const visit = (id) => {
    state.set(id, 1);
    for (const next of out.get(id) || []) {
      if (state.get(next) === 1) back.add(`${id}>${next}`);
      else if (!state.has(next)) visit(next);
    }
    state.set(id, 2);
  };
  if (out.has("__start__")) visit("__start__");
  ids.forEach((id) => { if (!state.has(id)) visit(id); });
  const layer = new Map(ids.map((id) => [id, 0]));
  for (let round = 0; round < ids.length; round++) {
    let moved = false;
    for (const e of graph.edges) {
      if (back.has(`${e.source}>${e.target}`)) continue;
      if (layer.get(e.target) <= layer.get(e.source)) { layer.set(e.target, layer.get(e.source) + 1); moved = true; }
    }
    if (!moved) break;
  }
  if (layer.has("__end__")) layer.set("__end__", Math.max(...layer.values()));
  return { layer, back };
}

/** svg + caption for `graph`; `visited` nodes, `taken` edges ("a>b"), `next` and `failed` nodes. */
export function drawGraph(graph, { visited = new Set(), taken = new Set(), next = new Set(), failed = new Set() } = {}) {
  const { layer, back } = layers(graph);
  const rows = [];
  for (const n of graph.nodes) (rows[layer.get(n.id)] ||= []).push(n.id);
  const widest = Math.max(1, ...rows.map((r) => r?.length || 0));
  const width = PAD * 2 + widest * W + (widest - 1) * GAP_X + 60;
  const height = PAD * 2 + rows.length * H + (rows.length - 1) * GAP_Y;
  const pos = new Map();
  rows.forEach((row, i) => (row || []).forEach((id, j) => {
    const rowWidth = row.length * W + (row.length - 1) * GAP_X;
    pos.set(id, { x: (width - 60 - rowWidth) / 2 + j * (W + GAP_X), y: PAD + i * (H + GAP_Y) });
  }));
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "graph", "aria-labelledby": "graph-title" },
    s("title", { id: "graph-title" }, "Graph of the thread's nodes; the path taken and the next nodes are highlighted"),
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, orient: "auto-start-reverse", markerUnits: "userSpaceOnUse" },
      s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
  for (const e of graph.edges) {
    const a = pos.get(e.source), b = pos.get(e.target);
    if (!a || !b) continue;
    const key = `${e.source}>${e.target}`;
    let d;
    if (back.has(key) || b.y <= a.y) {  // a loop back: around the right side
      const x = Math.max(a.x, b.x) + W + 24 + (back.size % 3) * 4;
      d = `M${a.x + W},${a.y + H / 2} C${x},${a.y + H / 2} ${x},${b.y + H / 2} ${b.x + W},${b.y + H / 2}`;
    } else {
      const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y;
      d = `M${x1},${y1} C${x1},${y1 + GAP_Y / 2} ${x2},${y2 - GAP_Y / 2} ${x2},${y2 - 2}`;
    }
    svg.append(s("path", { d, class: `edge${taken.has(key) ? " taken" : ""}${e.conditional ? " conditional" : ""}`, "marker-end": "url(#arrow)" }));
  }
  for (const n of graph.nodes) {
    const p = pos.get(n.id);
    const cls = ["node", visited.has(n.id) ? "visited" : "", next.has(n.id) ? "next" : "", failed.has(n.id) ? "failed" : "",
      n.id.startsWith("__") ? "terminal" : ""].filter(Boolean).join(" ");
    svg.append(s("g", { class: cls, "data-node": n.id, transform: `translate(${p.x},${p.y})` },
      s("rect", { width: W, height: H, rx: n.id.startsWith("__") ? 17 : 6 }),
      s("text", { x: W / 2, y: H / 2 + 5, "text-anchor": "middle" }, nodeLabel(n.id).slice(0, 16))));
  }
  const order = [...visited].filter((id) => !id.startsWith("__")).map(nodeLabel);
  const caption = h("p", { class: "graph-caption" },
    h("span", { class: "key visited" }, "ran"), " ", h("span", { class: "key next" }, "next"), " · Path: ",
    order.length ? order.join(" → ") : "not started", next.size ? ` · next: ${[...next].map(nodeLabel).join(", ")}` : "",
    failed.size ? ` · failed: ${[...failed].map(nodeLabel).join(", ")}` : "");
  return h("figure", { class: "graph-figure" }, h("div", { class: "scroll" }, svg), caption);
}
