// A JSON value as a collapsible tree (native <details>: keyboard and screen-reader
// friendly), and the differences between two values.
import { h } from "../dom.js";

function leaf(value) {
  if (value === null) return h("span", { class: "j-null" }, "null");
  if (typeof value === "string") return h("span", { class: "j-str" }, JSON.stringify(value));
  if (typeof value === "number") return h("span", { class: "j-num" }, String(value));
  if (typeof value === "boolean") return h("span", { class: "j-bool" }, String(value));
  return h("span", {}, String(value));
}

function size(value) {
  return Array.isArray(value) ? `[${value.length}]` : `{${Object.keys(value).length}}`;
}

/** The tree of `value`; keys whose path is in `changed` (a Map path -> kind) are marked. */
export function tree(value, { changed = new Map(), path = "", label = null, depth = 0 } = {}) {
  const mark = changed.get(path);
  const name = label === null ? null : h("span", { class: "j-key" }, label, ": ");
  const cls = mark ? `j-row changed-${mark}` : "j-row";
  if (value === null || typeof value !== "object") {
    return h("div", { class: cls, "data-path": path }, name, leaf(value), mark ? h("span", { class: "sr-only" }, ` (${mark})`) : null);
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
  const open = depth < 2 || [...changed.keys()].some((p) => p.startsWith(path + "/"));
  return h("details", { class: cls, open, "data-path": path },
    h("summary", {}, name, h("span", { class: "muted" }, size(value)), mark ? h("span", { class: "sr-only" }, ` (${mark})`) : null),
    h("div", { class: "j-children" }, entries.map(([key, v]) => tree(v, { changed, path: `${path}/${key}`, label: key, depth: depth + 1 }))));
}

/** What changed from `before` to `after`: [{path, kind: added|removed|changed, before, after}]. */
export function diff(before, after, path = "") {
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  const isObj = (v) => v !== null && typeof v === "object";
  if (!isObj(before) || !isObj(after) || Array.isArray(before) !== Array.isArray(after)) {
    if (before === undefined) return [{ path, kind: "added", after }];
    if (after === undefined) return [{ path, kind: "removed", before }];
    return [{ path, kind: "changed", before, after }];
  }
  const keys = Array.isArray(after) ? [...Array(Math.max(before.length, after.length)).keys()].map(String)
    : [...new Set([...Object.keys(before), ...Object.keys(after)])];
  return keys.flatMap((key) => diff(before[key], after[key], `${path}/${key}`));
}

function short(value) {
  const text = JSON.stringify(value);
  return text && text.length > 120 ? text.slice(0, 117) + "…" : text;
}

/** The differences as a list people can read. */
export function diffList(changes) {
  if (!changes.length) return h("p", { class: "muted" }, "No change from the previous checkpoint.");
  return h("ul", { class: "diff", "aria-label": "Changes from the previous checkpoint" }, changes.map((c) =>
    h("li", { class: `d-${c.kind}` },
      h("span", { class: "d-kind" }, { added: "+", removed: "−", changed: "~" }[c.kind]),
      h("code", {}, c.path.slice(1).replaceAll("/", ".") || "(state)"), " ",
      c.kind === "changed" ? [h("del", {}, short(c.before)), " → ", h("ins", {}, short(c.after))]
        : c.kind === "added" ? h("ins", {}, short(c.after)) : h("del", {}, short(c.before)))));
}
