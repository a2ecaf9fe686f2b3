// The in-page Python runtime: Pyodide in a Web Worker, loaded from this site only (no other
// host). Messages in: {type: "start", base} once, then {type: "run", cell, code, label}.
// Messages out: status, ready {info}, fatal {text}; for a cell: stream/value/image/error/note
// {cell, payload} as runner.py sends them, then done {cell, ok}.
"use strict";
let runner = null;

function post(message) { self.postMessage(message); }

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-cache" });
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return response.json();
}

async function start(base) {
  const site = await getJSON(base + "site.json");
  const index = new URL(site.pyodide, base).href;
  post({ type: "status", text: `Loading Python (Pyodide, ${(site.runtime_bytes / 1e6).toFixed(0)} MB from this site, once)…` });
  importScripts(index + "pyodide.js");
  const pyodide = await loadPyodide({ indexURL: index });
  post({ type: "status", text: "Loading NumPy and matplotlib…" });
  await pyodide.loadPackage(site.packages, { messageCallback: () => {}, errorCallback: (m) => console.warn(m) });
  const purelib = pyodide.runPython("import sysconfig; sysconfig.get_paths()['purelib']");
  for (const wheel of site.wheels) {
    const response = await fetch(new URL(wheel, base).href);
    if (!response.ok) throw new Error(`GET ${wheel}: HTTP ${response.status}`);
    pyodide.unpackArchive(await response.arrayBuffer(), "zip", { extractDir: purelib });
  }
  const source = await (await fetch(base + "runner.py", { cache: "no-cache" })).text();
  pyodide.FS.writeFile(purelib + "/live_runner.py", source);
  runner = pyodide.pyimport("live_runner");
  const send = (kind, cell, payload) => post({ type: kind, cell, payload: JSON.parse(payload) });
  const info = runner.setup(send, base, new URL(site.models, base).href);
  post({ type: "ready", info });
}

self.onmessage = async (event) => {
  const message = event.data;
  if (message.type === "start") {
    try {
      await start(message.base);
    } catch (err) {
      post({ type: "fatal", text: String(err && err.message || err) });
    }
  } else if (message.type === "run") {
    let ok = false;
    try {
      ok = runner.run(message.code, message.cell, message.label);
    } catch (err) {
      post({ type: "error", cell: message.cell, payload: { text: String(err && err.message || err) } });
    }
    const measured = Boolean(runner && runner.LAST.get("measured"));
    post({ type: "done", cell: message.cell, ok, measured });
  }
};
