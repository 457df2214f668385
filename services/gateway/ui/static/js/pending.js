// Views whose backends may not be routed by this gateway (placement in tumblebug, ladybug): each
// probes its route and says "not available" while the gateway answers 404 for it; otherwise it
// imports its module on demand (so the first load stays small) and renders the real view.
import { available } from "./api.js";
import { h } from "./dom.js";
import { namespaces } from "./fleet.js";

export const PENDING = {
  placement: {
    title: "Placement",
    // GET on a POST-only route answers 405, not 404, once the route exists.
    probe: async () => "/tumblebug/v1/recommendations:spec",
    what: "the recommendation form and a plan shown on the map",
    load: async () => (await import("./placement.js")).placementView,
  },
  apps: {
    title: "Applications",
    probe: async () => `/ladybug/v1/namespaces/${encodeURIComponent((await namespaces())[0] || "default")}/apps`,
    what: "instances, health, rollout progress and events of the applications (ladybug)",
    load: async () => (await import("./apps.js")).appsListView,
  },
  app: {
    title: "Applications",
    probe: async () => `/ladybug/v1/namespaces/${encodeURIComponent((await namespaces())[0] || "default")}/apps`,
    what: "instances, health, rollout progress and events of the applications (ladybug)",
    load: async () => (await import("./apps.js")).appDetailView,
  },
};

export function pendingView(name) {
  const spec = PENDING[name];
  return async (root, ctx, ...args) => {
    root.replaceChildren(h("h1", {}, spec.title), h("p", { class: "muted", role: "status" }, "Checking…"));
    const there = await available(await spec.probe().catch(() => "/"));
    if (there) return (await spec.load())(root, ctx, ...args);
    root.replaceChildren(h("h1", {}, spec.title), h("p", { class: "notice", id: "not-available" },
      `${spec.title} is not available: the gateway has no route for it. It shows ${spec.what}.`));
  };
}
