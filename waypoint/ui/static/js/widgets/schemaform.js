// A form built from a JSON schema (an assistant's input schema, an approval's response
// schema): one labelled control per property, a JSON box for anything richer.
import { h } from "../dom.js";
import { validate } from "./jsonschema.js";

let seq = 0;

function resolve(schema, root) {
  let s = schema || {};
  while (s.$ref) s = s.$ref.replace(/^#\//, "").split("/").reduce((n, p) => n?.[p], root) || {};
  const alt = s.anyOf || s.oneOf;  // Optional[X] is anyOf [X, null]: edit it as X
  if (alt) {
    const real = alt.map((a) => resolve(a, root)).filter((a) => a.type !== "null");
    if (real.length === 1) return { ...real[0], title: s.title || real[0].title, description: s.description || real[0].description };
  }
  return s;
}

function control(name, schema, root, initial) {
  const s = resolve(schema, root);
  const id = `sf${++seq}`;
  const label = s.title || name;
  if (s.enum) {
    const el = h("select", { id, name }, h("option", { value: "" }, "—"),
      s.enum.map((v) => h("option", { value: JSON.stringify(v), selected: JSON.stringify(initial) === JSON.stringify(v) }, String(v))));
    return { label, el, read: () => (el.value === "" ? undefined : JSON.parse(el.value)) };
  }
  if (s.type === "boolean") {
    const el = h("input", { id, name, type: "checkbox", checked: initial === true });
    return { label, el, read: () => el.checked, inline: true };
  }
  if (s.type === "integer" || s.type === "number") {
    const el = h("input", { id, name, type: "text", inputmode: "decimal", value: initial ?? "" });
    return { label, el, read: () => {
      const text = el.value.trim();
      if (text === "") return undefined;
      const n = Number(text);
      return Number.isNaN(n) ? text : n;  // left as text: the checker names the error
    } };
  }
  if (s.type === "string") {
    const long = (s.maxLength || 0) > 200 || /text|draft|body|content|comment|description/i.test(name);
    const el = long ? h("textarea", { id, name, rows: 3 }, initial ?? "") : h("input", { id, name, type: "text", value: initial ?? "" });
    if (long) el.value = initial ?? "";
    return { label, el, read: () => (el.value === "" ? undefined : el.value) };
  }
  if (s.type === "array" && resolve(s.items, root).type === "string") {
    const el = h("textarea", { id, name, rows: 3 });
    el.value = (initial || []).join("\n");
    return { label, el, hint: "one per line", read: () => {
      const lines = el.value.split("\n").map((l) => l.trim()).filter(Boolean);
      return lines.length ? lines : undefined;
    } };
  }
  const el = h("textarea", { id, name, rows: 3, class: "code", spellcheck: "false" });
  el.value = initial === undefined ? "" : JSON.stringify(initial, null, 2);
  return { label, el, hint: "JSON", read: () => {
    if (!el.value.trim()) return undefined;
    try { return JSON.parse(el.value); } catch { throw new Error(`${name}: not valid JSON`); }
  } };
}

/** {element, read()}: read() gives {value, problems} (problems from the schema). */
export function schemaForm(schema, { initial = {}, legend = null } = {}) {
  const root = schema || {};
  const s = resolve(root, root);
  const props = s.properties || {};
  const required = new Set(s.required || []);
  const element = h("fieldset", { class: "schema-form" }, legend ? h("legend", {}, legend) : null);
  if (!Object.keys(props).length) {  // no properties to show: the whole value as JSON
    const box = control("value", { type: "object" }, root, Object.keys(initial).length ? initial : undefined);
    element.append(h("div", { class: "field" }, h("label", { for: box.el.id }, "Value (JSON)"), box.el));
    return { element, read: () => {
      const value = box.read() ?? {};
      return { value, problems: validate(value, root) };
    } };
  }
  const controls = Object.entries(props).map(([name, prop]) => {
    const c = control(name, prop, root, initial[name]);
    const hintId = c.el.id + "-hint";
    const desc = resolve(prop, root).description;
    const hint = [c.hint, desc].filter(Boolean).join(" · ");
    if (hint) c.el.setAttribute("aria-describedby", hintId);
    if (required.has(name)) c.el.setAttribute("aria-required", "true");
    element.append(h("div", { class: c.inline ? "field inline" : "field" },
      h("label", { for: c.el.id }, c.label, required.has(name) ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null),
      c.el, hint ? h("small", { class: "hint", id: hintId }, hint) : null));
    return [name, c];
  });
  return { element, read: () => {
    const value = {};
    const problems = [];
    for (const [name, c] of controls) {
      try {
        const v = c.read();
        if (v !== undefined) value[name] = v;
      } catch (err) { problems.push(err.message); }
    }
    return { value, problems: [...problems, ...validate(value, root)] };
  } };
}
