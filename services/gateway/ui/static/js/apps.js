// Applications (ladybug; loaded on demand): every namespace's apps with phase and revision, and
// one app's detail (instances, rollout progress, events) followed live over WatchApplication's
// Server-Sent Events, the way the MCIS detail follows WatchMcis.
import { api, enc, listAll, watch } from "./api.js";
import { errorText, h, word } from "./dom.js";
import { namespaces } from "./fleet.js";

const appPath = (ns, name) => `/ladybug/v1/namespaces/${enc(ns)}/apps/${enc(name)}`;
const link = (ns, name) => `#/apps/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
const phase = (p) => word((p || "APP_PHASE_UNSPECIFIED").replace(/^APP_PHASE_UNSPECIFIED$/, "unknown"));
const counts = (app) => { const c = (app.status || {}).counts || {}; return `${c.healthy || 0}/${c.desired || 0} healthy`; };
const when = (t) => (t ? new Date(t).toLocaleTimeString() : "");

export async function appsListView(root, ctx) {
  const table = h("table", { id: "apps" }, h("caption", { class: "muted" }, "Every application of every namespace"),
    h("thead", {}, h("tr", {}, ["Namespace", "Application", "MCIS", "Phase", "Revision", "Instances"]
      .map((t) => h("th", { scope: "col" }, t)))), h("tbody"));
  const status = h("p", { class: "muted", role: "status", id: "apps-status" }, "Loading…");
  root.replaceChildren(h("h1", {}, "Applications"), table, status);
  const refresh = async () => {
    try {
      const all = [];
      for (const ns of await namespaces()) {
        for (const app of await listAll(`/ladybug/v1/namespaces/${enc(ns)}/apps`, "applications")) all.push({ ns, app });
      }
      table.tBodies[0].replaceChildren(...all.map(({ ns, app }) => h("tr", { "data-app": app.name, "data-ns": ns,
        "data-phase": (app.status || {}).phase || "" },
      h("td", {}, ns), h("td", {}, h("a", { href: link(ns, app.name) }, app.name)), h("td", {}, app.mcis),
      h("td", {}, phase((app.status || {}).phase) + (app.deleting ? " (deleting)" : "")),
      h("td", {}, `r${app.revision || 0}` + ((app.status || {}).stableRevision ? ` (stable r${app.status.stableRevision})` : "")),
      h("td", {}, counts(app)))));
      status.textContent = all.length ? "" : "No applications yet.";
      status.dataset.listed = String(all.length);
    } catch (err) { status.textContent = `Could not load the applications: ${errorText(err)}`; }
  };
  await refresh();
  ctx.every(5000, refresh);
}

function rolloutPanel(app) {
  const st = app.status || {};
  const r = st.rollout;
  const c = st.counts || {};
  if (!r || !r.toRevision) {
    return h("p", { id: "rollout" }, `No rollout in progress. Stable revision r${st.stableRevision || 0}` +
      (st.failedRevision ? `; r${st.failedRevision} failed` : "") + ".");
  }
  const desired = c.desired || 0, updated = c.updated || 0;
  // The record keeps the last rollout once it is done: say which it is.
  const done = st.phase === "AVAILABLE" && st.stableRevision === r.toRevision;
  const kind = r.type && r.type !== "STRATEGY_TYPE_UNSPECIFIED" ? `${word(r.type)} rollout` : "Rollout";
  return h("div", { id: "rollout", "data-to": r.toRevision, "data-done": String(done) },
    h("p", {}, `${done ? "Last rollout (done): " : ""}${kind} r${r.fromRevision || 0} → r${r.toRevision}` +
      `${r.promoted ? " (promoted)" : ""}: ${r.step || ""}`),
    h("label", { for: "rollout-progress" }, `${updated}/${desired} instances updated`),
    " ", h("progress", { id: "rollout-progress", max: Math.max(desired, 1), value: updated }),
    r.deadlineTime && !done ? h("span", { class: "muted" }, ` deadline ${when(r.deadlineTime)}`) : "");
}

export async function appDetailView(root, ctx, ns, name) {
  const path = appPath(ns, name);
  const head = h("p", { id: "app-status", role: "status" });
  const message = h("p", { class: "error", role: "alert" });
  const rollout = h("section", { "aria-labelledby": "rollout-title" });
  const instBody = h("tbody");
  const eventBody = h("tbody");
  root.replaceChildren(
    h("p", {}, h("a", { href: "#/apps" }, "All applications")),
    h("h1", {}, `Application ${name}`, h("span", { class: "muted" }, ` in ${ns}`)),
    head, message,
    h("h2", { id: "rollout-title" }, "Rollout"), rollout,
    h("h2", {}, "Instances"),
    h("table", { id: "instances" }, h("thead", {}, h("tr", {}, ["Instance", "VM", "Where", "State", "Health",
      "Revision", "Canary", "Restarts"].map((t) => h("th", { scope: "col" }, t)))), instBody),
    h("h2", {}, "Events"),
    h("table", { id: "events" }, h("thead", {}, h("tr", {}, ["Time", "Type", "Reason", "Revision", "Instance",
      "Message"].map((t) => h("th", { scope: "col" }, t)))), eventBody));

  const showApp = (app) => {
    const st = app.status || {};
    head.dataset.phase = st.phase || "";
    head.textContent = `${phase(st.phase)} · revision r${app.revision || 0} · ${counts(app)} · MCIS ${app.mcis}` +
      (st.endpoint ? ` · endpoint ${st.endpoint}` : "") + (app.deleting ? " · deleting" : "");
    message.textContent = st.message || "";
    rollout.replaceChildren(rolloutPanel(app));
  };
  let reading = null;
  const readDetail = async () => {
    if (reading) return reading;
    reading = (async () => {
      try {
        const [inst, ev] = await Promise.all([api(`${path}/instances`), api(`${path}/events?page_size=50`)]);
        instBody.replaceChildren(...(inst.instances || []).map((i) => h("tr", { "data-instance": i.id,
          "data-healthy": String(!!i.healthy) },
        h("td", {}, i.id), h("td", {}, i.vm), h("td", {}, `${i.provider} ${i.region}`),
        h("td", {}, word((i.state || "").replace(/^WORKLOAD_/, "")) + (i.draining ? " (draining)" : "")),
        h("td", {}, i.healthy ? "Healthy" : "Unhealthy"), h("td", {}, `r${i.revision || 0}`),
        h("td", {}, i.canary ? "Canary" : ""), h("td", {}, String(i.restarts || 0)))));
        eventBody.replaceChildren(...(ev.events || []).slice().reverse().map((e) => h("tr", {},
          h("td", {}, when(e.time)), h("td", {}, e.type), h("td", {}, e.reason || ""),
          h("td", {}, e.revision ? `r${e.revision}` : ""), h("td", {}, e.instance || ""), h("td", {}, e.message || ""))));
      } catch (err) { message.textContent = `Could not read the instances: ${errorText(err)}`; } finally { reading = null; }
    })();
    return reading;
  };

  try { showApp(await api(path)); } catch (err) {
    head.textContent = err.status === 404 ? `Application ${name} does not exist (any more).` : errorText(err);
    return;
  }
  await readDetail();
  ctx.onLeave(watch(`${path}:watch`, (app) => { showApp(app); readDetail(); }, () => {
    head.textContent = `Application ${name} was deleted.`;
    instBody.replaceChildren();
  }));
  ctx.every(5000, readDetail); // instance health changes do not always bump the application record
}
