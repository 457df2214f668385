// Small DOM helpers: elements built with text nodes (never innerHTML from data).

/** h("a", {href: "#"}, "text", child…) */
export function h(tag, attrs = {}, ...children) {
  const ns = attrs.svg ? "http://www.w3.org/2000/svg" : null;
  const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "svg" || v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const svg = (tag, attrs = {}, ...children) => h(tag, { ...attrs, svg: true }, ...children);

/** Title-case of an enum name: SUSPENDED → Suspended. */
export const word = (s) => (s || "").replace(/^VM_STATUS_UNSPECIFIED$/, "Unknown").toLowerCase()
  .replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());

export const badge = (status) => h("span", { class: `badge s-${status || "VM_STATUS_UNSPECIFIED"}` }, word(status));

/** Ask before doing something; resolves true when confirmed. */
export function confirmAction(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"),
    { once: true }));
}

export const errorText = (err) => (err && err.message) || String(err);
