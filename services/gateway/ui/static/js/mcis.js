// MCIS list and detail. The detail follows the MCIS over Server-Sent Events (WatchMcis): each
// new version of the record re-reads the VM table, so a status change shows without a reload.
import { api, enc, watch } from "./api.js";
import { badge, confirmAction, errorText, h, word } from "./dom.js";
import { everyMcis, mcisPath } from "./fleet.js";
import { metricsPanel } from "./charts.js";

const link = (ns, name) => `#/mcis/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
const action = (a) => (a && a !== "ACTION_NONE" && a !== "ACTION_UNSPECIFIED" ? word(a.replace(/^ACTION_/, "")) : "");

export async function mcisListView(root, ctx) {
  const table = h("table", {}, h("caption", { class: "muted" }, "Every MCIS of every namespace"),
    h("thead", {}, h("tr", {}, ["Namespace", "MCIS", "Status", "VMs", "In progress"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody"));
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  root.replaceChildren(h("h1", {}, "MCIS"), table, status);
  const refresh = async () => {
    try {
      const all = await everyMcis();
      table.tBodies[0].replaceChildren(...all.map(({ ns, mcis }) => h("tr", { "data-mcis": mcis.name },
        h("td", {}, ns), h("td", {}, h("a", { href: link(ns, mcis.name) }, mcis.name)), h("td", {}, mcis.status),
        h("td", {}, String((mcis.statusCount || {}).total ?? (mcis.vms || []).length)),
        h("td", {}, action(mcis.targetAction) + (mcis.deleting ? " (deleting)" : "")))));
      status.textContent = all.length ? "" : "No MCIS yet.";
    } catch (err) { status.textContent = `Could not load the MCIS: ${errorText(err)}`; }
  };
  await refresh();
  ctx.every(5000, refresh);
}

export async function mcisDetailView(root, ctx, ns, name) {
  const path = mcisPath(ns, name);
  const head = h("p", { id: "mcis-status", role: "status" });
  const message = h("p", { class: "error", role: "alert" });
  const vmBody = h("tbody");
  const groups = h("div", { class: "toolbar", id: "subgroups" });
  const metrics = h("section", { "aria-labelledby": "metrics-title" });
  let current = null;

  const verb = (label, what, run) => h("button", { type: "button", onclick: async () => {
    if (!(await confirmAction(`${label} ${what}?`))) return;
    message.textContent = "";
    try { await run(); } catch (err) { message.textContent = `${label} failed: ${errorText(err)}`; }
  } }, label);
  const post = (verbName, body = {}) => api(`${path}:${verbName}`, { method: "POST", body });

  root.replaceChildren(
    h("p", {}, h("a", { href: "#/mcis" }, "All MCIS")),
    h("h1", {}, `MCIS ${name}`, h("span", { class: "muted" }, ` in ${ns}`)),
    head, message,
    h("div", { class: "toolbar", role: "group", "aria-label": "MCIS actions" },
      verb("Suspend", `every VM of ${name}`, () => post("suspend")),
      verb("Resume", `every VM of ${name}`, () => post("resume")),
      verb("Reboot", `every VM of ${name}`, () => post("reboot")),
      h("button", { type: "button", class: "danger", onclick: async () => {
        if (!(await confirmAction(`Delete MCIS ${name} and terminate its VMs?`))) return;
        try { await api(`${path}?terminate=true`, { method: "DELETE" }); } catch (err) {
          message.textContent = `Delete failed: ${errorText(err)}`;
        }
      } }, "Delete")),
    h("h2", {}, "Subgroups"), groups,
    h("h2", {}, "VMs"),
    h("table", { id: "vms" },
      h("thead", {}, h("tr", {}, ["VM", "Subgroup", "Where", "Status", "In progress", "Agent", "IP", "Actions"]
        .map((t) => h("th", { scope: "col" }, t)))), vmBody),
    metrics);

  const showVms = (vms) => {
    vmBody.replaceChildren(...vms.map((vm) => h("tr", { "data-vm": vm.name, "data-status": vm.status },
      h("td", {}, vm.name), h("td", {}, vm.subgroup), h("td", {}, `${vm.provider} ${vm.region}`),
      h("td", { class: "vm-status" }, badge(vm.status), vm.error ? h("span", { class: "muted" }, ` ${vm.error}`) : ""),
      h("td", {}, action(vm.targetAction) + (vm.removing ? " (removing)" : "")),
      h("td", { class: "vm-agent" }, vm.agentStatus || "—"),
      h("td", {}, vm.publicIp || vm.privateIp || ""),
      h("td", {}, h("div", { class: "toolbar" },
        verb("Suspend", `VM ${vm.name}`, () => post("suspend", { vm: vm.name })),
        verb("Resume", `VM ${vm.name}`, () => post("resume", { vm: vm.name })),
        verb("Reboot", `VM ${vm.name}`, () => post("reboot", { vm: vm.name })))))));
  };
  const showMcis = (mcis) => {
    current = mcis;
    head.textContent = `${mcis.status || "—"}${action(mcis.targetAction) ? ` · ${action(mcis.targetAction)} in progress` : ""}` +
      `${mcis.deleting ? " · deleting" : ""}`;
    message.textContent = mcis.message || "";
    groups.replaceChildren(...(mcis.subgroups || []).map((sg) => {
      const id = `size-${sg.name}`;
      const size = h("input", { id, type: "number", min: 0, max: 100, value: sg.size ?? 1, style: "width:5em" });
      return h("span", { class: "toolbar" }, h("label", { for: id }, `${sg.name} size`), size,
        verb("Scale", `subgroup ${sg.name}`, () => api(`${path}/subgroups/${enc(sg.name)}:scale`,
          { method: "POST", body: { size: Number(size.value) } })));
    }));
  };
  let reading = null;
  const readVms = async () => {
    if (reading) return reading;
    reading = (async () => {
      try { showVms((await api(`${path}/vms?page_size=1000`)).vms || []); } catch (err) {
        message.textContent = `Could not read the VMs: ${errorText(err)}`;
      } finally { reading = null; }
    })();
    return reading;
  };

  try { showMcis(await api(path)); } catch (err) {
    head.textContent = err.status === 404 ? `MCIS ${name} does not exist (any more).` : errorText(err);
    return;
  }
  await readVms();
  ctx.onLeave(watch(`${path}:watch`, (mcis) => { showMcis(mcis); readVms(); }, () => {
    head.textContent = `MCIS ${name} was deleted.`;
    vmBody.replaceChildren();
  }));
  ctx.every(5000, readVms); // agent health changes do not touch the MCIS record
  await metricsPanel(metrics, ctx, ns, name, () => (current ? current : {}));
}
