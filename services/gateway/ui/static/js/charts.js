// Metric charts (uPlot) per MCIS (one line per VM) and per VM, refreshed every few seconds,
// and the MCIS's alert events. MCIS series come from tumblebug (which asks dragonfly); a single
// VM's from dragonfly's own query route when the gateway routes dragonfly, else from the
// MCIS series.
import uPlot from "../vendor/uplot.min.js";
import { api, ApiError, enc } from "./api.js";
import { errorText, h, word } from "./dom.js";

export const GROUPS = [
  { group: "cpu", title: "CPU", fields: ["utilization_percent"], unit: "%" },
  { group: "memory", title: "Memory", fields: ["utilization_percent"], unit: "%" },
  { group: "disk", title: "Disk", fields: ["utilization_percent"], unit: "%" },
  { group: "network", title: "Network", fields: ["recv_bytes_per_second", "sent_bytes_per_second"], unit: "B/s" },
];
const PALETTE = ["#0b5cad", "#1a7f37", "#9a6700", "#cf222e", "#8250df", "#1b7c83", "#bc4c00", "#57606a"];
const REFRESH_MS = 5000;

/** uPlot's columns from series [{vm, points:[{time, values}]}]: x = union of times (s). */
export function columns(series, fields) {
  const times = [...new Set(series.flatMap((s) => (s.points || []).map((p) => Date.parse(p.time) / 1000)))]
    .sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const lines = [], data = [times];
  for (const s of series) {
    for (const f of fields) {
      const col = new Array(times.length).fill(null);
      for (const p of s.points || []) {
        const v = (p.values || {})[f];
        if (v !== undefined) col[index.get(Date.parse(p.time) / 1000)] = v;
      }
      lines.push(fields.length > 1 ? `${s.vm} ${f.split("_")[0]}` : s.vm);
      data.push(col);
    }
  }
  return { lines, data, points: series.reduce((n, s) => n + (s.points || []).length, 0) };
}

async function query(ns, mcis, vm, group) {
  const q = "duration=15m";
  if (vm) {
    try {
      return (await api(`/dragonfly/v1/namespaces/${enc(ns)}/mcis/${enc(mcis)}/vms/${enc(vm)}/metrics/${group}?${q}`)).series || [];
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
    }
  }
  const all = (await api(`/tumblebug/v1/namespaces/${enc(ns)}/mcis/${enc(mcis)}/metrics/${group}?${q}`)).series || [];
  return vm ? all.filter((s) => s.vm === vm) : all;
}

function chart(box, spec, cols) {
  const width = Math.max(300, box.clientWidth - 16);
  const opts = {
    width, height: 200, title: "",
    scales: { x: { time: true } },
    axes: [{}, { values: (u, ticks) => ticks.map((v) => (spec.unit === "%" ? `${v}%` : human(v))) }],
    series: [{}, ...cols.lines.map((label, i) => ({ label, stroke: PALETTE[i % PALETTE.length], width: 1.5,
      spanGaps: true, points: { show: true, size: 4 } }))],
  };
  return new uPlot(opts, cols.data, box);
}

const human = (v) => (v >= 1e6 ? `${(v / 1e6).toFixed(1)}M` : v >= 1e3 ? `${(v / 1e3).toFixed(1)}k` : `${Math.round(v)}`);

export async function metricsPanel(root, ctx, ns, mcis, vmsOf) {
  const select = h("select", { id: "metrics-vm" }, h("option", { value: "" }, "every VM"));
  const status = h("p", { class: "muted", role: "status" });
  const grid = h("div", { class: "charts" });
  const alerts = h("tbody");
  root.replaceChildren(h("h2", { id: "metrics-title" }, "Metrics (last 15 minutes)"),
    h("div", { class: "toolbar" }, h("label", { for: "metrics-vm" }, "Show"), select), grid, status,
    h("h2", {}, "Alert events"),
    h("table", { id: "alerts" }, h("thead", {}, h("tr", {}, ["Time", "VM", "Rule", "State", "Severity", "Message"]
      .map((t) => h("th", { scope: "col" }, t)))), alerts));
  const boxes = GROUPS.map((spec) => {
    const box = h("div", { class: "chart", "data-group": spec.group, "data-points": "0" },
      h("h3", {}, `${spec.title} (${spec.unit})`));
    grid.append(box);
    return { spec, box, plot: null, shape: "" };
  });
  select.addEventListener("change", () => refresh());
  ctx.onLeave(() => boxes.forEach((b) => b.plot && b.plot.destroy()));

  const refreshVmChoices = () => {
    const names = (vmsOf().vms || []).map((v) => v.name);
    const have = [...select.options].slice(1).map((o) => o.value);
    for (const n of names) if (!have.includes(n)) select.append(h("option", { value: n }, `VM ${n}`));
  };
  const refresh = async () => {
    const vm = select.value;
    try {
      const vms = (await api(`/tumblebug/v1/namespaces/${enc(ns)}/mcis/${enc(mcis)}/vms?page_size=1000`)).vms || [];
      vmsOf().vms = vms;
      refreshVmChoices();
      for (const b of boxes) {
        const cols = columns(await query(ns, mcis, vm, b.spec.group), b.spec.fields);
        const shape = `${vm}|${cols.lines.join(",")}`;
        if (b.plot && b.shape === shape) b.plot.setData(cols.data);
        else {
          if (b.plot) b.plot.destroy();
          b.plot = chart(b.box, b.spec, cols);
          b.shape = shape;
        }
        b.box.dataset.points = String(cols.points);
        b.box.setAttribute("aria-label", `${b.spec.title} of ${vm ? `VM ${vm}` : `MCIS ${mcis}`}: ${cols.points} points`);
      }
      status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (err) { status.textContent = `Could not read the metrics: ${errorText(err)}`; }
    try {
      const events = ((await api(`/dragonfly/v1/namespaces/${enc(ns)}/alert-events?page_size=100`)).events || [])
        .filter((e) => e.mcis === mcis);
      alerts.replaceChildren(...(events.length ? events.map(alertRow) : [h("tr", {}, h("td", { colspan: 6 }, "None."))]));
    } catch (err) {
      alerts.replaceChildren(h("tr", {}, h("td", { colspan: 6 }, err.status === 404
        ? "Not available: the gateway does not route dragonfly." : errorText(err))));
    }
  };
  await refresh();
  ctx.every(REFRESH_MS, refresh);
}

export const alertRow = (e) => h("tr", {}, h("td", {}, e.time ? new Date(e.time).toLocaleString() : ""),
  h("td", {}, e.vm), h("td", {}, e.rule), h("td", {}, word(e.state)), h("td", {}, word(e.severity)),
  h("td", {}, e.message));
