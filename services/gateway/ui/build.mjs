// Rebuilds the dashboard's vendored assets from npm packages; the outputs are committed, so
// `make setup` and the running gateway never need npm or the network.
//
//   cd services/gateway/ui && npm ci && node build.mjs      (or: tools/build-dashboard-assets)
//
// Writes:
//   static/vendor/uplot.min.js   uPlot's minified IIFE with an ES `export default` appended
//   static/vendor/uplot.min.css  uPlot's stylesheet
//   static/vendor/world.svg      land outline (world-atlas land-110m) in d3-geo's equirectangular
//                                projection, viewBox 0 0 360 180 (x = lon + 180, y = 90 - lat)
//   static/vendor/LICENSES.txt   the licenses of everything above
//   ../../../tests/e2e/assets/axe.min.js   axe-core, injected by the browser tests only
import { readFileSync, writeFileSync, copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { feature } from "topojson-client";
import { geoEquirectangular, geoPath } from "d3-geo";

const here = dirname(fileURLToPath(import.meta.url));
const mod = (p) => join(here, "node_modules", p);
const vendor = join(here, "static", "vendor");
const testAssets = join(here, "..", "..", "..", "tests", "e2e", "assets");
mkdirSync(vendor, { recursive: true });
mkdirSync(testAssets, { recursive: true });

// uPlot: the IIFE declares `var uPlot`; exporting it makes the file an ES module.
const uplot = readFileSync(mod("uplot/dist/uPlot.iife.min.js"), "utf8");
writeFileSync(join(vendor, "uplot.min.js"), uplot.trimEnd() + "\nexport default uPlot;\n");
copyFileSync(mod("uplot/dist/uPlot.min.css"), join(vendor, "uplot.min.css"));

// World outline: d3-geo's equirectangular projection cuts the rings that cross the antimeridian
// (Russia, Fiji, Antarctica) so no stray line crosses the map; 0.1 unit precision keeps it small.
const topo = JSON.parse(readFileSync(mod("world-atlas/land-110m.json"), "utf8"));
const land = feature(topo, topo.objects.land);
const projection = geoEquirectangular().scale(180 / Math.PI).translate([180, 90]).precision(0.1);
const d = geoPath(projection).digits(1)(land);
writeFileSync(join(vendor, "world.svg"),
  `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 360 180" preserveAspectRatio="none">` +
  `<title>World land outline (Natural Earth via world-atlas)</title>` +
  `<path fill="#d7dee6" stroke="#9aa8b6" stroke-width=".2" d="${d}"/></svg>\n`);

const licenses = [
  ["uPlot 1.6.32 (static/vendor/uplot.min.*)", "uplot/LICENSE"],
  ["world-atlas 2.0.2 (static/vendor/world.svg; data: Natural Earth, public domain)", "world-atlas/LICENSE"],
  ["topojson-client 3.1.0 (used at build time only)", "topojson-client/LICENSE"],
  ["d3-geo 3.1.2 (used at build time only)", "d3-geo/LICENSE"],
];
writeFileSync(join(vendor, "LICENSES.txt"), licenses.map(([what, file]) =>
  `== ${what}\n\n${readFileSync(mod(file), "utf8").trim()}\n`).join("\n"));

copyFileSync(mod("axe-core/axe.min.js"), join(testAssets, "axe.min.js"));
copyFileSync(mod("axe-core/LICENSE"), join(testAssets, "axe-core.LICENSE"));
console.log("dashboard assets written to", vendor, "and", testAssets);
