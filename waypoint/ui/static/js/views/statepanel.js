// The state at a checkpoint (collapsible tree, diff against its parent) and time travel:
// replay from it, or fork it with an edited state checked against the state schema.
import { api } from "../api.js";
import { h, toast } from "../dom.js";
import { validate } from "../widgets/jsonschema.js";
import { nodesText } from "./timeline.js";
import { diff, diffList, tree } from "../widgets/tree.js";

export const STREAM = ["values", "updates", "messages-tuple"];

/** The update that turns `before` into `edited`, key by key. A list that only grew is
 * sent as its new items: a reducer that appends (operator.add) then gives the edited list. */
export function changesOf(before, edited) {
  const out = {};
  for (const [key, value] of Object.entries(edited)) {
    const old = before?.[key];
    if (JSON.stringify(old) === JSON.stringify(value)) continue;
    if (Array.isArray(old) && Array.isArray(value) && value.length > old.length &&
        JSON.stringify(value.slice(0, old.length)) === JSON.stringify(old)) {
      out[key] = value.slice(old.length);
    } else out[key] = value;
  }
  return out;
}

export function statePanel({ threadId, graphId, schema, row, state, parentState, onDone }) {
  const values = state?.values ?? {};
  const changes = parentState ? diff(parentState.values ?? {}, values) : [];
  const changed = new Map(changes.map((c) => [c.path, c.kind]));
  const editorBox = h("div", { class: "fork-editor", hidden: true });
  const panel = h("section", { class: "card state-panel", "aria-labelledby": "state-title" },
    h("h2", { id: "state-title" }, `State at step ${row.step} `, h("small", { class: "muted" }, `after ${nodesText(row.nodes)}`)),
    h("div", { class: "actions" },
      h("button", { type: "button", id: "replay", onclick: () => replay() }, "Replay from here"),
      h("button", { type: "button", id: "fork", onclick: () => openEditor() }, "Fork: edit state…")),
    editorBox,
    h("h3", {}, "Changes from the previous checkpoint"),
    parentState ? diffList(changes) : h("p", { class: "muted" }, "The first checkpoint: nothing before it."),
    h("h3", {}, "State"),
    h("div", { class: "json-tree", id: "state-tree" }, tree(values, { changed })));

  async function start(checkpointId, what) {
    const run = await api(`/threads/${encodeURIComponent(threadId)}/runs`, { method: "POST", body: {
      assistant_id: graphId, input: null, checkpoint_id: checkpointId, stream_mode: STREAM } });
    toast(`${what}: run ${run.run_id.slice(0, 8)} started`);
    onDone();
  }

  async function replay() {
    try { await start(row.checkpoint_id, "Replay"); } catch (err) { toast(err.message, "error"); }
  }

  function openEditor() {
    const text = h("textarea", { id: "fork-json", class: "code", rows: 14, spellcheck: "false",
      "aria-describedby": "fork-hint fork-error" });
    text.value = JSON.stringify(values, null, 2);
    const error = h("div", { id: "fork-error", class: "error", role: "alert" });
    const submit = async (event) => {
      event.preventDefault();
      error.textContent = "";
      let edited;
      try { edited = JSON.parse(text.value); } catch (err) { error.textContent = `Not valid JSON: ${err.message}`; return; }
      if (edited === null || typeof edited !== "object" || Array.isArray(edited)) { error.textContent = "The state must be a JSON object."; return; }
      const problems = schema ? validate(edited, schema) : [];
      if (problems.length) {
        error.append(h("p", {}, "Refused: the state does not fit the graph's state schema."), h("ul", {}, problems.map((p) => h("li", {}, p))));
        return;
      }
      const update = changesOf(values, edited);
      if (!Object.keys(update).length) { error.textContent = "Nothing changed: edit a value first."; return; }
      try {
        const made = await api(`/threads/${encodeURIComponent(threadId)}/state`, { method: "POST",
          body: { values: update, checkpoint_id: row.checkpoint_id } });
        await start(made.checkpoint.checkpoint_id, "Fork");
      } catch (err) {
        error.append(h("p", {}, `Refused by the server: ${err.message}`));
      }
    };
    editorBox.replaceChildren(h("form", { onsubmit: submit, "aria-label": "Fork with an edited state" },
      h("label", { for: "fork-json" }, "State for the new branch (JSON)"), text,
      h("small", { class: "hint", id: "fork-hint" }, "Checked against the graph's state schema before it is sent. Only the keys you change are written; a list that only grew sends its new items."),
      error,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "fork-run" }, "Fork and run"),
        h("button", { type: "button", onclick: () => { editorBox.hidden = true; } }, "Cancel"))));
    editorBox.hidden = false;
    text.focus();
  }

  return panel;
}
