// Run a Python script in Pyodide under Node.js, with a site's assembled runtime.
//
//   node pyodide_node.mjs RUNTIME_DIR SCRIPT.py [HOST_DIR]
//
// RUNTIME_DIR holds pyodide.js, pyodide.asm.{js,wasm}, python_stdlib.zip, pyodide-lock.json and
// the package files (the folder the book build writes to _build/html/_live/pyodide). The packages
// of the site's site.json (numpy, matplotlib, threadpoolctl) are loaded from there (no network); HOST_DIR, if given, is mounted at /host so the
// script can read files (wheels, tests). The process exits with the script's exit status:
// SystemExit(n) gives n, an uncaught exception 1.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const [runtime, script, host] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const { loadPyodide } = require(path.resolve(runtime, "pyodide.js"));

const pyodide = await loadPyodide({ indexURL: path.resolve(runtime) + "/", stdout: (s) => console.log(s), stderr: (s) => console.error(s) });
// The packages the site's runner loads (site.json beside the runtime folder), as in the browser.
let packages = ["numpy", "matplotlib"];
try {
  packages = JSON.parse(readFileSync(path.resolve(runtime, "..", "site.json"), "utf8")).packages;
} catch (err) { /* a bare runtime folder: numpy and matplotlib */ }
await pyodide.loadPackage(packages, { messageCallback: () => {} });
if (host) {
  pyodide.FS.mkdirTree("/host");
  pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: path.resolve(host) }, "/host");
}
let status = 0;
try {
  pyodide.runPython(readFileSync(script, "utf8"), { filename: script });
} catch (err) {
  const match = /SystemExit: (\d+)/.exec(String(err.message));
  if (match) status = Number(match[1]);
  else { console.error(String(err.message)); status = 1; }
}
process.exit(status);
