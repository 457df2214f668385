// What the map and the MCIS list show: every namespace's MCIS with their VMs, and where each
// connection's region is (tumblebug's catalog carries the region's coordinates).
import { api, enc, listAll } from "./api.js";

const locations = new Map(); // connection → {display, latitude, longitude} | null

/** The region's location of a connection, from its first catalog spec (cached). */
export async function locationOf(connection) {
  if (!locations.has(connection)) {
    const page = await api(`/tumblebug/v1/catalog/specs?connection=${enc(connection)}&page_size=1`);
    const spec = (page.specs || [])[0];
    locations.set(connection, spec && spec.location ? spec.location : null);
  }
  return locations.get(connection);
}

export const namespaces = async () => (await listAll("/tumblebug/v1/namespaces", "namespaces")).map((n) => n.name);

export const mcisPath = (ns, name) => `/tumblebug/v1/namespaces/${enc(ns)}/mcis/${enc(name)}`;

/** [{ns, mcis}] with `mcis.vms` filled. */
export async function everyMcis() {
  const out = [];
  for (const ns of await namespaces()) {
    const list = await listAll(`/tumblebug/v1/namespaces/${enc(ns)}/mcis`, "mcis");
    const full = await Promise.all(list.map((m) => api(`${mcisPath(ns, m.name)}?vms=true`).catch(() => m)));
    for (const mcis of full) out.push({ ns, mcis });
  }
  return out;
}

// Which status a group of VMs shows: the one that most needs a look.
const RANK = ["FAILED", "CREATING", "SUSPENDING", "RESUMING", "REBOOTING", "TERMINATING", "VM_STATUS_UNSPECIFIED",
  "SUSPENDED", "NOT_EXIST", "TERMINATED", "RUNNING"];
export const worst = (statuses) => statuses.slice().sort((a, b) => RANK.indexOf(a) - RANK.indexOf(b))[0];

export const COLOURS = { RUNNING: "#1a7f37", SUSPENDED: "#57606a", FAILED: "#cf222e", TERMINATED: "#24292f",
  NOT_EXIST: "#24292f" };
export const colour = (status) => COLOURS[status] || "#9a6700";
