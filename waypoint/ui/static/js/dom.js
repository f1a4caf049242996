// Small DOM and formatting helpers shared by the views (no framework).

/** h("div", {class: "x", onclick: fn}, child, ...): an element; children may be
 * strings, nodes, arrays, null or false. */
export function h(tag, attrs = {}, ...children) {
  const el = tag === "svg" || attrs?.svg ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false || name === "svg") continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "value" && "value" in el && !(el instanceof SVGElement)) el.value = value;
    else if (name === "checked") el.checked = Boolean(value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function s(tag, attrs = {}, ...children) { return h(tag, { ...attrs, svg: true }, ...children); }

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

export function shortId(id) { return id ? String(id).slice(0, 8) + "…" + String(id).slice(-4) : "—"; }

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtCost(usd) {
  if (usd === null || usd === undefined) return "—";
  if (usd === 0) return "$0";
  return usd < 0.01 ? `$${usd.toPrecision(2)}` : `$${usd.toFixed(usd < 10 ? 4 : 2)}`;
}

export function fmtCountdown(deadlineIso) {
  const left = (new Date(deadlineIso).getTime() - Date.now()) / 1000;
  if (left <= 0) return "overdue";
  const d = Math.floor(left / 86400), hh = Math.floor(left % 86400 / 3600);
  const mm = Math.floor(left % 3600 / 60), ss = Math.floor(left % 60);
  const pad = (n) => String(n).padStart(2, "0");
  return (d ? `${d} d ` : "") + `${pad(hh)}:${pad(mm)}:${pad(ss)} left`;
}

export function badge(status) {
  return h("span", { class: `badge st-${status}` }, status);
}

let toastTimer = null;
/** A short message in the polite live region. */
export function toast(message, kind = "info") {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = `toast show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.className = "toast"; }, 4000);
}

/** A labelled control: <div class=field><label for=id>text</label>control</div>. */
let fieldSeq = 0;
export function field(label, control, hint) {
  const id = control.id || `f${++fieldSeq}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control,
    hint ? h("small", { class: "hint" }, hint) : null);
}

export function nodeLabel(name) {
  return { __start__: "start", __end__: "end", __input__: "input", __update__: "state edit", __fork__: "fork" }[name] || name;
}

/** Calls fn every `ms` while the view is shown; returns a stop function. */
export function every(ms, fn) {
  let stopped = false, timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch (err) { console.warn(err); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return () => { stopped = true; clearTimeout(timer); };
}
