// The dashboard's shell: sign-in, the hash router (#/map, #/mcis, #/mcis/{ns}/{name}, #/alerts,
// #/placement, #/apps, #/apps/{ns}/{name}), and a context per view whose timers and streams stop
// when it is left.
import { api, ApiError, clearKey, key, setKey, whenUnauthorized } from "./api.js";
import { mapView } from "./map.js";
import { mcisDetailView, mcisListView } from "./mcis.js";
import { alertsView } from "./alerts.js";
import { pendingView } from "./pending.js";
import { h } from "./dom.js";

const view = document.getElementById("view");
const login = document.getElementById("login");
let leave = [];

function context() {
  const ctx = {
    left: false,
    every(ms, fn) { const id = setInterval(() => { if (!ctx.left) fn(); }, ms); leave.push(() => clearInterval(id)); },
    onLeave(fn) { leave.push(fn); },
  };
  leave.push(() => { ctx.left = true; });
  return ctx;
}

function stopView() {
  for (const fn of leave) { try { fn(); } catch { /* already stopped */ } }
  leave = [];
}

const ROUTES = [
  [/^#\/map$/, "map", mapView],
  [/^#\/mcis$/, "mcis", mcisListView],
  [/^#\/mcis\/([^/]+)\/([^/]+)$/, "mcis", mcisDetailView],
  [/^#\/alerts$/, "alerts", alertsView],
  [/^#\/placement$/, "placement", pendingView("placement")],
  [/^#\/apps$/, "apps", pendingView("apps")],
  [/^#\/apps\/([^/]+)\/([^/]+)$/, "apps", pendingView("app")],
];

async function route() {
  stopView();
  if (!key()) { askForKey(); return; }
  const hash = location.hash || "#/map";
  const found = ROUTES.map(([re, nav, fn]) => [hash.match(re), nav, fn]).find(([m]) => m);
  if (!found) { location.hash = "#/map"; return; }
  const [match, nav, fn] = found;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === nav) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  document.body.dataset.view = nav;
  const ctx = context();
  view.dataset.ready = "false";
  try {
    await fn(view, ctx, ...match.slice(1).map(decodeURIComponent));
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) view.append(h("p", { class: "error" }, String(err.message || err)));
  }
  view.dataset.ready = "true";
}

function askForKey(message = "") {
  stopView();
  view.replaceChildren();
  document.getElementById("signout").hidden = true;
  document.getElementById("login-error").textContent = message;
  if (!login.open) login.showModal();
  document.getElementById("login-key").focus();
}

document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = document.getElementById("login-key");
  setKey(input.value.trim());
  try {
    // Any authenticated call tells whether the key is good; 404 (no such route) still means it is.
    await api("/tumblebug/v1/namespaces?page_size=1").catch((err) => {
      if (!(err instanceof ApiError) || err.status === 401) throw err;
    });
  } catch (err) {
    clearKey();
    document.getElementById("login-error").textContent = err.status === 401
      ? "This key was refused. Check it and try again." : `The gateway did not answer: ${err.message}`;
    return;
  }
  input.value = "";
  login.close();
  document.getElementById("signout").hidden = false;
  route();
});
login.addEventListener("cancel", (ev) => ev.preventDefault()); // no data without a key

document.getElementById("signout").addEventListener("click", () => { clearKey(); askForKey(); });
whenUnauthorized(() => askForKey("The key was refused. Enter a valid API key."));
window.addEventListener("hashchange", route);
if (key()) document.getElementById("signout").hidden = false;
route();
