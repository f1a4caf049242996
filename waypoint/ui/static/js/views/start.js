// Start a run: pick an assistant, fill a form built from its input schema.
import { api } from "../api.js";
import { field, h, toast } from "../dom.js";
import { schemaForm } from "../widgets/schemaform.js";
import { STREAM } from "./statepanel.js";

export async function render(main, _params, ctx) {
  const assistants = await api("/assistants/search", { method: "POST", body: { limit: 200 } });
  const params = new URLSearchParams(location.search);
  const pick = h("select", { name: "assistant", id: "assistant" }, assistants.map((a) =>
    h("option", { value: a.assistant_id, selected: params.get("assistant") === a.graph_id || params.get("assistant") === a.assistant_id },
      a.name === a.graph_id ? a.graph_id : `${a.name} (${a.graph_id})`)));
  const formBox = h("div", { id: "input-form" });
  const error = h("div", { class: "error", role: "alert" });
  let current = null, asked = 0;
  const show = async () => {
    const assistant = assistants.find((a) => a.assistant_id === pick.value);
    if (!assistant) return;
    const mine = ++asked;  // only the latest pick's schema may fill the form
    const schemas = await api(`/assistants/${encodeURIComponent(assistant.assistant_id)}/schemas`);
    if (mine !== asked) return;
    current = { assistant, form: schemaForm(schemas.input_schema || {}, { legend: `Input of ${assistant.graph_id}` }) };
    formBox.replaceChildren(current.form.element);
  };
  pick.addEventListener("change", () => show().catch((err) => { error.textContent = err.message; }));
  const submit = async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!current) return;
    const { value, problems } = current.form.read();
    if (problems.length) { error.append(h("p", {}, "The input does not fit the schema:"), h("ul", {}, problems.map((p) => h("li", {}, p)))); return; }
    try {
      const thread = await api("/threads", { method: "POST", body: { metadata: { graph_id: current.assistant.graph_id } } });
      const run = await api(`/threads/${encodeURIComponent(thread.thread_id)}/runs`, { method: "POST", body: {
        assistant_id: current.assistant.assistant_id, input: value, stream_mode: STREAM } });
      toast(`Run ${run.run_id.slice(0, 8)} started`);
      ctx.navigate(`/ui/threads/${encodeURIComponent(thread.thread_id)}`);
    } catch (err) { error.textContent = `Refused: ${err.message}`; }
  };
  main.append(h("h1", {}, "Start a run"), h("form", { class: "card start", onsubmit: submit, "aria-label": "Start a run" },
    field("Assistant", pick), formBox, error, h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "start-run" }, "Start run"))));
  if (assistants.length) await show(); else formBox.append(h("p", { class: "muted" }, "This server has no assistants."));
}
