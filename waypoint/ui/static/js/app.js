// The shell: client-side routes under /ui, the key dialog, who is signed in.
import { api, getKey, onUnauthorized, setKey } from "./api.js";
import { append, clear, h, toast } from "./dom.js";

const ROUTES = [
  [/^\/ui\/?$/, "runs", "./views/runs.js"],
  [/^\/ui\/runs\/?$/, "runs", "./views/runs.js"],
  [/^\/ui\/threads\/?$/, "threads", "./views/threads.js"],
  [/^\/ui\/threads\/([^/]+)\/?$/, "threads", "./views/thread.js"],
  [/^\/ui\/inbox\/?$/, "inbox", "./views/inbox.js"],
  [/^\/ui\/start\/?$/, "start", "./views/start.js"],
  [/^\/ui\/costs\/?$/, "costs", "./views/costs.js"],
];

const ctx = { identity: null, info: null, navigate };
let cleanup = null;

function askForKey() {
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  const error = document.getElementById("key-error");
  error.textContent = getKey() ? "That key was refused. Enter another." : "";
  setKey(null);
  input.value = "";
  return new Promise((resolve) => {
    const form = document.getElementById("key-form");
    const done = (event) => {
      event.preventDefault();
      if (!input.value.trim()) { error.textContent = "Enter a key."; return; }
      setKey(input.value.trim());
      form.removeEventListener("submit", done);
      dialog.close();
      resolve();
    };
    form.addEventListener("submit", done);
    dialog.addEventListener("cancel", (e) => e.preventDefault(), { once: true });
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}

async function whoAmI() {
  ctx.identity = await api("/identity");
  ctx.info = await api("/info");
  const who = document.getElementById("who");
  append(clear(who), [
    h("span", {}, `tenant ${ctx.identity.tenant}`),
    ctx.identity.is_admin ? h("span", { class: "pill" }, "admin") : null,
    ctx.identity.keys_required ? h("button", { type: "button", class: "link", onclick: () => { setKey(null); location.reload(); } }, "Sign out") : null]);
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path); else history.pushState(null, "", path);
  route();
}

async function route() {
  if (cleanup) { try { cleanup(); } catch (err) { console.warn(err); } cleanup = null; }
  const main = document.getElementById("main");
  const path = location.pathname;
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (found && link.dataset.nav === found[1]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clear(main);
  if (!found) { main.append(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/ui/runs", "data-link": true }, "Back to the runs"))); return; }
  const [pattern, , module] = found;
  const params = path.match(pattern).slice(1).map(decodeURIComponent);
  try {
    const view = await import(module);
    cleanup = (await view.render(main, params, ctx)) || null;
  } catch (err) {
    console.error(err);
    main.append(h("p", { class: "error", role: "alert" }, `Could not show this page: ${err.message}`));
  }
  refreshInboxCount();
}

async function refreshInboxCount() {
  try {
    const pending = await api("/approvals", { query: { status: "pending", limit: 1000 } });
    const pill = document.getElementById("inbox-count");
    pill.hidden = pending.length === 0;
    pill.textContent = String(pending.length);
    pill.setAttribute("aria-label", `${pending.length} pending`);
  } catch { /* the inbox link still works */ }
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  const href = new URL(link.href, location.href);
  if (href.origin !== location.origin || !href.pathname.startsWith("/ui")) return;
  event.preventDefault();
  navigate(href.pathname + href.search);
});
window.addEventListener("popstate", route);

onUnauthorized(askForKey);
(async () => {
  try { await whoAmI(); } catch (err) { toast(`Could not reach the server: ${err.message}`, "error"); }
  await route();
  setInterval(refreshInboxCount, 5000);
})();
