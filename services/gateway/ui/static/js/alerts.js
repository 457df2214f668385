// Alert events of every namespace (dragonfly), newest first.
import { api, ApiError, enc } from "./api.js";
import { errorText, h } from "./dom.js";
import { namespaces } from "./fleet.js";
import { alertRow } from "./charts.js";

export async function alertsView(root, ctx) {
  const body = h("tbody");
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  root.replaceChildren(h("h1", {}, "Alert events"),
    h("table", { id: "alerts" }, h("thead", {}, h("tr", {}, ["Time", "VM", "Rule", "State", "Severity", "Message"]
      .map((t) => h("th", { scope: "col" }, t)))), body), status);
  const refresh = async () => {
    try {
      const events = [];
      for (const ns of await namespaces()) {
        events.push(...((await api(`/dragonfly/v1/namespaces/${enc(ns)}/alert-events?page_size=200`)).events || []));
      }
      events.sort((a, b) => (b.time || "").localeCompare(a.time || ""));
      body.replaceChildren(...events.map(alertRow));
      status.textContent = events.length ? `${events.length} events` : "No alert events.";
    } catch (err) {
      status.textContent = err instanceof ApiError && err.status === 404
        ? "Not available: the gateway does not route dragonfly." : `Could not read the alerts: ${errorText(err)}`;
    }
  };
  await refresh();
  ctx.every(10000, refresh);
}
