// Placement (loaded on demand): the spec recommendation form (RecommendSpec: ranked catalog
// specs with each weigher's score and whether a figure is an estimate) and an MCIS plan
// (PlanMcis) drawn on the world map, one marker per region with its VM count.
import { api, enc } from "./api.js";
import { errorText, h, svg } from "./dom.js";
import { namespaces } from "./fleet.js";

const WEIGHERS = ["cost", "performance", "performance_per_cost", "location", "latency"];
const num = (v, digits = 2) => (v === undefined || v === null ? "—" : Number(v).toFixed(digits));
const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

function field(id, label, attrs = {}) {
  return h("span", { class: "field" }, h("label", { for: id }, label), h("input", { id, name: id, ...attrs }));
}
const value = (form, id) => form.querySelector(`#${id}`).value;

/** The requirements both forms share (fields prefixed `prefix`). */
function requirements(form, prefix) {
  const req = {};
  const vcpu = Number(value(form, `${prefix}-vcpu`)), mem = Number(value(form, `${prefix}-mem`));
  const price = Number(value(form, `${prefix}-price`));
  if (vcpu) req.vcpuMin = vcpu;
  if (mem) req.memoryGibMin = mem;
  if (price) req.priceMax = price;
  const providers = list(value(form, `${prefix}-providers`));
  if (providers.length) req.providers = providers;
  return req;
}
const requirementFields = (prefix) => [
  field(`${prefix}-vcpu`, "vCPU at least", { type: "number", min: 0, value: 1, style: "width:5em" }),
  field(`${prefix}-mem`, "Memory GiB at least", { type: "number", min: 0, step: "any", value: 0, style: "width:5em" }),
  field(`${prefix}-price`, "Price $/h at most", { type: "number", min: 0, step: "any", value: "", style: "width:6em" }),
  field(`${prefix}-providers`, "Providers (comma-separated)", { type: "text", style: "width:12em" }),
];

function recommendForm() {
  const rows = h("tbody");
  const status = h("p", { class: "muted", role: "status", id: "recommend-status" });
  const weights = WEIGHERS.map((w) => field(`w-${w}`, `${w.replace(/_/g, " ")} weight`,
    { type: "number", min: 0, step: "any", value: w === "cost" ? 1 : 0, style: "width:4.5em" }));
  const form = h("form", { id: "recommend-form", "aria-labelledby": "recommend-title" },
    h("div", { class: "toolbar" }, requirementFields("r")),
    h("div", { class: "toolbar" }, weights,
      field("r-limit", "Results", { type: "number", min: 1, max: 1000, value: 10, style: "width:5em" }),
      h("button", { type: "submit" }, "Recommend")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { requirements: requirements(form, "r"), weights: {}, limit: Number(value(form, "r-limit")) || 10 };
    for (const w of WEIGHERS) { const x = Number(value(form, `w-${w}`)); if (x) body.weights[w] = x; }
    status.textContent = "Ranking…";
    try {
      const reply = await api("/tumblebug/v1/recommendations:spec", { method: "POST", body });
      const specs = reply.specs || [];
      rows.replaceChildren(...specs.map((r, i) => {
        const s = r.spec || {};
        return h("tr", { "data-spec": s.id, class: "ranked" },
          h("td", {}, String(i + 1)), h("td", {}, s.id), h("td", {}, `${s.provider} ${s.region}`),
          h("td", {}, String(s.vcpu ?? "")), h("td", {}, num(s.memoryGib, 1)), h("td", {}, num(s.pricePerHour, 4)),
          h("td", {}, num(r.score, 3)),
          h("td", {}, h("ul", { class: "scores" }, (r.scores || []).map((w) => h("li", {},
            `${w.weigher} ${num(w.score, 3)} × ${num(w.weight, 1)}`, w.estimated ? h("span", { class: "flag" }, " estimated") : "")))),
          h("td", {}, r.estimated ? "estimate" : "measured"));
      }));
      status.textContent = `${specs.length} of ${reply.passed ?? 0} passing specs (catalog: ${reply.catalogSize ?? 0}).`;
    } catch (err) { rows.replaceChildren(); status.textContent = `Could not rank: ${errorText(err)}`; }
  });
  return h("section", { "aria-labelledby": "recommend-title" },
    h("h2", { id: "recommend-title" }, "Recommend a spec"), form, status,
    h("table", { id: "ranked" }, h("caption", { class: "muted" }, "Ranked specs, best first"),
      h("thead", {}, h("tr", {}, ["#", "Spec", "Where", "vCPU", "GiB", "$/h", "Score", "Weighers", "Figures"]
        .map((t) => h("th", { scope: "col" }, t)))), rows));
}

function planMap(placements) {
  const byRegion = new Map();
  for (const p of placements) {
    const s = p.spec || {};
    const k = `${s.provider}/${s.region}`;
    if (!byRegion.has(k)) byRegion.set(k, { provider: s.provider, region: s.region, loc: s.location, vms: 0, cost: 0 });
    const m = byRegion.get(k);
    m.vms += p.count || 0;
    m.cost += p.costPerHour || 0;
  }
  const marks = [...byRegion.values()].filter((m) => m.loc).map((m) => {
    const label = `${m.vms} VM${m.vms === 1 ? "" : "s"} in ${m.provider} ${m.region}` +
      `${m.loc.display ? ` (${m.loc.display})` : ""}, $${num(m.cost, 4)}/h`;
    const x = (m.loc.longitude || 0) + 180, y = 90 - (m.loc.latitude || 0);
    return svg("g", { class: "plan-marker", "data-region": `${m.provider}/${m.region}`, "data-vms": m.vms,
      role: "img", "aria-label": label }, svg("title", {}, label),
    svg("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 4, fill: "#0b5cad" }),
    svg("text", { x: x.toFixed(1), y: (y + 1.5).toFixed(1), "text-anchor": "middle", "font-size": 4, fill: "#fff" }, String(m.vms)));
  });
  return svg("svg", { viewBox: "0 0 360 180", role: "img", "aria-label": "World map of the planned regions" },
    svg("image", { href: "vendor/world.svg", x: 0, y: 0, width: 360, height: 180, preserveAspectRatio: "none" }),
    svg("g", {}, marks));
}

async function planForm() {
  const nss = await namespaces().catch(() => []);
  const status = h("p", { role: "status", id: "plan-status" });
  const box = h("div", { class: "map", id: "plan-map" });
  const rows = h("tbody");
  const form = h("form", { id: "plan-form" },
    h("div", { class: "toolbar" },
      h("span", { class: "field" }, h("label", { for: "p-ns" }, "Namespace"),
        h("select", { id: "p-ns" }, (nss.length ? nss : ["default"]).map((n) => h("option", { value: n }, n)))),
      field("p-count", "VMs", { type: "number", min: 1, max: 1000, value: 3, style: "width:5em" }),
      h("span", { class: "field" }, h("label", { for: "p-objective" }, "Objective"),
        h("select", { id: "p-objective" }, ["cost", "performance", "performance_per_cost"].map((o) =>
          h("option", { value: o }, o.replace(/_/g, " "))))),
      field("p-budget", "Budget $/h", { type: "number", min: 0, step: "any", value: "", style: "width:6em" }),
      field("p-regions", "Regions at least", { type: "number", min: 0, value: 2, style: "width:4em" })),
    h("div", { class: "toolbar" }, requirementFields("p"), h("button", { type: "submit" }, "Plan")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const placement = {
      groups: [{ name: "g", count: Number(value(form, "p-count")) || 1, requirements: requirements(form, "p") }],
      objective: value(form, "p-objective"),
      constraints: { budgetPerHour: Number(value(form, "p-budget")) || 0, minRegions: Number(value(form, "p-regions")) || 0 },
    };
    status.textContent = "Planning…";
    try {
      const plan = await api(`/tumblebug/v1/namespaces/${enc(value(form, "p-ns"))}/mcis:plan`, { method: "POST", body: { placement } });
      const placements = plan.placements || [];
      status.dataset.status = plan.status || "";
      status.textContent = `Plan ${plan.status || "—"} · $${num(plan.costPerHour, 4)}/h` +
        (plan.performance ? ` · performance ${num(plan.performance, 1)}${plan.performanceEstimated ? " (estimated)" : ""}` : "") +
        (plan.maxRttMs ? ` · max RTT ${num(plan.maxRttMs, 1)} ms${plan.rttEstimated ? " (estimated)" : ""}` : "") +
        ` · solved in ${num(plan.solveS, 2)} s` + (plan.message ? ` · ${plan.message}` : "") +
        ((plan.binding || []).length ? ` · binding: ${plan.binding.map((b) => b.constraint).join(", ")}` : "");
      box.replaceChildren(planMap(placements));
      rows.replaceChildren(...placements.map((p) => h("tr", {},
        h("td", {}, p.group), h("td", {}, (p.spec || {}).id), h("td", {}, `${(p.spec || {}).provider} ${(p.spec || {}).region}`),
        h("td", {}, String(p.count || 0)), h("td", {}, num(p.costPerHour, 4)))));
    } catch (err) { status.textContent = `Could not plan: ${errorText(err)}`; }
  });
  return h("section", { "aria-labelledby": "plan-title" },
    h("h2", { id: "plan-title" }, "Plan an MCIS"),
    h("p", { class: "muted" }, "Nothing is created: the plan shows where the VMs would go and what they would cost."),
    form, status, box,
    h("table", { id: "planned" }, h("caption", { class: "muted" }, "Planned VMs"),
      h("thead", {}, h("tr", {}, ["Group", "Spec", "Where", "VMs", "$/h"].map((t) => h("th", { scope: "col" }, t)))), rows));
}

export async function placementView(root) {
  root.replaceChildren(h("h1", {}, "Placement"), recommendForm(), await planForm());
}
