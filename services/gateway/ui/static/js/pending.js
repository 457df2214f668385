// Views whose backends are built separately: each probes its route and says "not available"
// while the gateway answers 404 for it. To wire one, replace its `render` with the real view
// (same signature as the other views: (root, ctx) => Promise).
import { available } from "./api.js";
import { h } from "./dom.js";
import { namespaces } from "./fleet.js";

export const PENDING = {
  placement: {
    title: "Placement",
    // GET on a POST-only route answers 405, not 404, once the route exists.
    probe: async () => "/tumblebug/v1/recommendations:spec",
    what: "the recommendation form and a plan shown on the map",
    render: null,
  },
  apps: {
    title: "Applications",
    probe: async () => `/ladybug/v1/namespaces/${encodeURIComponent((await namespaces())[0] || "default")}/apps`,
    what: "instances, health, rollout progress and events of the applications (ladybug)",
    render: null,
  },
};

export function pendingView(name) {
  const spec = PENDING[name];
  return async (root, ctx) => {
    root.replaceChildren(h("h1", {}, spec.title), h("p", { class: "muted", role: "status" }, "Checking…"));
    const there = await available(await spec.probe().catch(() => "/"));
    if (there && spec.render) return spec.render(root, ctx);
    root.replaceChildren(h("h1", {}, spec.title), h("p", { class: "notice", id: "not-available" },
      there ? `${spec.title} is served by the gateway, but this page does not show it yet.`
        : `${spec.title} is not available: the gateway has no route for it yet. It will show ${spec.what}.`));
  };
}
