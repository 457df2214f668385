// The world map: an outline shipped with the page (vendor/world.svg, equirectangular,
// 360×180 units) and one marker per region an MCIS uses, coloured by its VMs' status.
import { h, svg, word, errorText } from "./dom.js";
import { colour, everyMcis, locationOf, worst } from "./fleet.js";

const W = 360, H = 180;
const project = (loc) => [loc.longitude + 180, 90 - loc.latitude];

/** Markers: [{ns, mcis, region, provider, vms, status, loc}] */
async function markers() {
  const out = [];
  for (const { ns, mcis } of await everyMcis()) {
    const byRegion = new Map();
    for (const vm of mcis.vms || []) {
      const k = `${vm.provider}/${vm.region}`;
      if (!byRegion.has(k)) byRegion.set(k, { ns, mcis: mcis.name, provider: vm.provider, region: vm.region,
        connection: vm.connection, vms: [] });
      byRegion.get(k).vms.push(vm);
    }
    for (const m of byRegion.values()) {
      m.loc = await locationOf(m.connection).catch(() => null);
      m.status = worst(m.vms.map((v) => v.status));
      out.push(m);
    }
  }
  return out;
}

function draw(list) {
  // Several MCIS in one region: spread their markers on a small circle so each stays clickable.
  const seen = new Map();
  const g = list.filter((m) => m.loc).map((m) => {
    const [x0, y0] = project(m.loc);
    const k = `${x0},${y0}`;
    const i = seen.get(k) || 0;
    seen.set(k, i + 1);
    const x = x0 + (i ? 3 * Math.cos(i) : 0), y = y0 + (i ? 3 * Math.sin(i) : 0);
    const label = `MCIS ${m.mcis} (${m.ns}): ${m.vms.length} VM${m.vms.length > 1 ? "s" : ""} in ` +
      `${m.provider} ${m.region}${m.loc.display ? ` (${m.loc.display})` : ""}, ${word(m.status)}`;
    return svg("a", { href: `#/mcis/${encodeURIComponent(m.ns)}/${encodeURIComponent(m.mcis)}`, class: "marker",
      "data-mcis": m.mcis, "data-ns": m.ns, "data-region": `${m.provider}/${m.region}`, "data-status": m.status,
      "aria-label": label },
    svg("title", {}, label),
    svg("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 2.6 + Math.min(m.vms.length, 10) * 0.25,
      fill: colour(m.status) }));
  });
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "World map of MCIS regions" },
    svg("image", { href: "vendor/world.svg", x: 0, y: 0, width: W, height: H, preserveAspectRatio: "none" }),
    svg("g", {}, g));
}

export async function mapView(root, ctx) {
  root.replaceChildren(h("h1", {}, "MCIS by region"), h("p", { class: "muted" },
    "One marker per region an MCIS uses, coloured by the state of its VMs there. Select one to open the MCIS."));
  const box = h("div", { class: "map", id: "map" });
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  const legend = h("div", { class: "legend" }, ["RUNNING", "CREATING", "SUSPENDED", "FAILED"].map((s) =>
    h("span", {}, svg("svg", { width: 12, height: 12, "aria-hidden": "true" },
      svg("circle", { cx: 6, cy: 6, r: 5, fill: colour(s) })), " ", s === "CREATING" ? "In progress" : word(s))));
  root.append(box, legend, status);
  const refresh = async () => {
    try {
      const list = await markers();
      box.replaceChildren(draw(list));
      const where = list.filter((m) => !m.loc).length;
      status.textContent = `${list.length} marker${list.length === 1 ? "" : "s"}` +
        (where ? `; ${where} without a known location` : "") + `; updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      status.textContent = `Could not load the MCIS: ${errorText(err)}`;
    }
  };
  await refresh();
  ctx.every(5000, refresh);
}
