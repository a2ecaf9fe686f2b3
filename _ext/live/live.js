// Live code in the page: every code cell editable and runnable where it stands.
//
// The build writes every code cell's source (hidden and removed cells included) into
// <script id="live-cells">; each rendered cell carries the class live-index-<i>. Nothing is
// loaded until the reader presses Run: then worker.js starts Pyodide from this site's _live/
// folder. Running a cell first runs the page's earlier cells that have not run yet (in order,
// the hidden setup cells included). Stop ends the worker; the next Run starts a fresh one.
"use strict";
(() => {
  const data = document.getElementById("live-cells");
  if (!data) return;
  const base = new URL(data.dataset.base, document.baseURI).href;
  const cells = JSON.parse(data.textContent).cells;
  const self = document.currentScript || document.querySelector('script[src*="live.js"]');
  const version = self ? (new URL(self.src).searchParams.get("v") || "") : "";
  const views = new Map();           // cell index -> {cell, editor, output, button, state, dirty}
  let worker = null, ready = null, info = "";
  let executed = new Set();          // cells run by the current worker
  let current = null;                // {index, target, resolve}
  let queue = Promise.resolve(), generation = 0, busy = 0;

  // ---- the page's bar: Run all, Stop, status ----
  const bar = document.createElement("div");
  bar.className = "live-bar";
  bar.innerHTML =
    '<p class="live-intro">Edit and run this page\u2019s code in your browser ' +
    '(<kbd>Shift</kbd>+<kbd>Enter</kbd> in a cell runs it). Python loads from this site at your first Run.</p>' +
    '<div class="live-buttons"><button type="button" class="live-runall">Run all</button>' +
    '<button type="button" class="live-stop" disabled>Stop</button>' +
    '<span class="live-status" role="status" aria-live="polite"></span></div>';
  const status = bar.querySelector(".live-status");
  const stopButton = bar.querySelector(".live-stop");
  const heading = document.querySelector("article.bd-article h1") || document.querySelector("h1");
  const firstCell = document.querySelector("div.cell[class*='live-index-']");
  if (heading && heading.parentNode) heading.insertAdjacentElement("afterend", bar);
  else if (firstCell) firstCell.insertAdjacentElement("beforebegin", bar);
  // The bar sticks below the header: a link to a figure or equation must not land under it.
  // live.css pads the page's scroll position by the bar's height, which changes as it wraps.
  const barHeight = () =>
    document.documentElement.style.setProperty("--live-bar-height", `${bar.offsetHeight}px`);
  barHeight();
  if ("ResizeObserver" in window) new ResizeObserver(barHeight).observe(bar);
  // Arriving with #target in the address: the browser may have scrolled before the bar existed.
  const arrived = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (arrived) requestAnimationFrame(() => arrived.scrollIntoView());

  // ---- each visible cell: an editable code area, a Run button, an output area ----
  let visibleNumber = 0;
  for (const cell of document.querySelectorAll("div.cell")) {
    const match = /(?:^|\s)live-index-(\d+)(?:\s|$)/.exec(cell.className);
    if (!match) continue;
    const index = Number(match[1]);
    const pre = cell.querySelector(".cell_input pre");
    const view = { cell, index, editor: null, dirty: false, output: null, button: null };
    if (pre) {
      visibleNumber += 1;
      view.number = visibleNumber;
      pre.setAttribute("contenteditable", "plaintext-only");
      if (pre.contentEditable !== "plaintext-only") pre.setAttribute("contenteditable", "true");
      pre.setAttribute("role", "textbox");
      pre.setAttribute("aria-multiline", "true");
      pre.setAttribute("aria-label", `Code of cell ${visibleNumber}, editable`);
      pre.setAttribute("spellcheck", "false");
      pre.tabIndex = 0;
      pre.addEventListener("input", () => { view.dirty = true; });
      // Before the first edit, the highlighted tokens become plain text: typing into a styled
      // token makes browsers wrap the new text in <font color> with the token's colour, which
      // the other colour scheme cannot read.
      pre.addEventListener("beforeinput", () => { if (!view.flat) { flatten(pre); view.flat = true; } });
      pre.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && (event.shiftKey || event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          runCell(index);
        }
      });
      // Names in the code link to the API reference (sphinx-codeautolink), but a browser does
      // not follow a link inside an editable area: Ctrl+click (Cmd+click) follows it, as in a
      // code editor; a plain click places the caret.
      pre.addEventListener("click", (event) => {
        const link = event.target.closest ? event.target.closest("a[href]") : null;
        if (link && pre.contains(link) && (event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          window.location.assign(link.href);
        }
      });
      view.editor = pre;
      const controls = document.createElement("div");
      controls.className = "live-controls";
      controls.innerHTML = '<button type="button" class="live-run">Run</button>' +
        '<span class="live-state" aria-live="polite"></span>';
      view.button = controls.querySelector(".live-run");
      view.state = controls.querySelector(".live-state");
      view.button.addEventListener("click", () => runCell(index));
      const input = cell.querySelector(".cell_input");
      const holder = input.closest("details") && cell.contains(input.closest("details")) ? input.closest("details") : input;
      holder.insertAdjacentElement("afterend", controls);
    }
    views.set(index, view);
  }

  // The text of an edited code area: text nodes as they are, <br> and block elements (which
  // some browsers insert on Enter) as line breaks. Not innerText: it is empty for a cell whose
  // code is folded away (hide-input) and so not rendered.
  function editorText(root) {
    let text = "";
    const walk = (node) => {
      for (const child of node.childNodes) {
        if (child.nodeType === Node.TEXT_NODE) text += child.data;
        else if (child.nodeName === "BR") text += "\n";
        else if (child.nodeType === Node.ELEMENT_NODE) {
          const block = child.nodeName === "DIV" || child.nodeName === "P";
          if (block && text && !text.endsWith("\n")) text += "\n";
          walk(child);
        }
      }
    };
    walk(root);
    return text.replace(/\u00a0/g, " ").replace(/\n$/, "");
  }

  function offsetIn(root, node, offset) {
    const range = document.createRange();
    range.setStart(root, 0);
    range.setEnd(node, offset);
    return range.toString().length;
  }

  function flatten(pre) {
    const selection = window.getSelection();
    let start = null, end = null;
    if (selection.rangeCount && pre.contains(selection.anchorNode)) {
      const range = selection.getRangeAt(0);
      start = offsetIn(pre, range.startContainer, range.startOffset);
      end = offsetIn(pre, range.endContainer, range.endOffset);
    }
    pre.textContent = pre.textContent;
    if (start !== null && pre.firstChild) {
      const range = document.createRange();
      range.setStart(pre.firstChild, Math.min(start, pre.firstChild.length));
      range.setEnd(pre.firstChild, Math.min(end, pre.firstChild.length));
      selection.removeAllRanges();
      selection.addRange(range);
    }
  }

  function sourceOf(index) {
    const view = views.get(index);
    if (view && view.editor && view.dirty) return editorText(view.editor);
    return cells.find((c) => c.i === index).src;
  }

  function outputOf(view) {
    if (!view.output) {
      view.output = document.createElement("div");
      view.output.className = "live-output";
      view.cell.appendChild(view.output);
    }
    return view.output;
  }

  function setStatus(text) { status.textContent = text; }

  function setBusy(delta) {
    busy += delta;
    stopButton.disabled = busy === 0;
    bar.classList.toggle("live-busy", busy > 0);
    bar.dataset.state = busy > 0 ? "running" : "idle";
  }

  // Where a cell's messages go: its own output, or (a hidden or removed cell) the output of the
  // cell the reader asked to run.
  function destination(index) {
    const view = views.get(index);
    if (view && view.editor) return view;
    if (current && views.get(current.target)) return views.get(current.target);
    return null;
  }

  function append(index, kind, payload) {
    const view = destination(index);
    if (!view) return;
    const out = outputOf(view);
    const foreign = view.index !== index;
    if (kind === "stream" || kind === "value") {
      if (foreign && kind !== "stream") return;
      if (foreign) return;  // printed text of hidden cells is hidden in the build too
      const cls = kind === "stream" ? `live-${payload.name}` : "live-value";
      let last = out.lastElementChild;
      if (!(kind === "stream" && last && last.tagName === "PRE" && last.classList.contains(cls))) {
        last = document.createElement("pre");
        last.className = cls;
        out.appendChild(last);
      }
      last.textContent += kind === "value" ? payload.text + "\n" : payload.text;
    } else if (kind === "image") {
      if (foreign) return;
      const img = document.createElement("img");
      img.src = "data:image/png;base64," + payload.png;
      img.alt = payload.alt;
      img.className = "live-image";
      out.appendChild(img);
    } else if (kind === "error") {
      const pre = document.createElement("pre");
      pre.className = "live-error";
      pre.textContent = (foreign ? "A setup cell this one depends on failed:\n" : "") + payload.text;
      out.appendChild(pre);
    } else if (kind === "note") {
      const p = document.createElement("p");
      p.className = "live-note";
      p.textContent = "Note: " + payload.text;
      out.appendChild(p);
    }
  }

  function onMessage(event) {
    const m = event.data;
    if (m.type === "status") setStatus(m.text);
    else if (["stream", "value", "image", "error", "note"].includes(m.type)) append(m.cell, m.type, m.payload);
    else if (m.type === "done" && current && current.index === m.cell) {
      const view = views.get(m.cell);
      // A cell that read a clock prints times of this browser, not the build's machine.
      if (view) view.cell.dataset.liveMeasured = m.measured ? "true" : "false";
      const done = current;
      current = null;
      done.resolve(m.ok);
    }
  }

  function ensureWorker() {
    if (ready) return ready;
    worker = new Worker(base + "worker.js?v=" + version);
    ready = new Promise((resolve, reject) => {
      worker.onmessage = (event) => {
        const m = event.data;
        if (m.type === "ready") { info = m.info; setStatus("Python ready: " + info); resolve(); }
        else if (m.type === "fatal") { setStatus("Python could not start: " + m.text); reject(new Error(m.text)); }
        else onMessage(event);
      };
      worker.onerror = (event) => { setStatus("Python could not start: " + event.message); reject(new Error(event.message)); };
    });
    worker.postMessage({ type: "start", base });
    return ready;
  }

  function execute(index, target) {
    const view = views.get(index);
    if (view && view.editor) {
      if (view.output) view.output.replaceChildren();
      outputOf(view);
      view.cell.classList.add("live-ran");
      view.state.textContent = "Running\u2026";
    }
    const label = view && view.number ? `cell ${view.number}` : `hidden cell ${index}`;
    const started = performance.now();
    return new Promise((resolve) => {
      current = { index, target, resolve };
      worker.postMessage({ type: "run", cell: index, code: sourceOf(index), label });
    }).then((ok) => {
      if (ok === null) return false;  // stopped: the worker and its state are gone
      executed.add(index);
      if (view && view.editor) {
        const seconds = ((performance.now() - started) / 1000).toFixed(1);
        view.state.textContent = ok ? `Done in ${seconds} s` : "Error (see below)";
      }
      return ok;
    });
  }

  // Queue a job; a Stop (a new generation) cancels every queued job.
  function schedule(job) {
    const mine = generation;
    setBusy(+1);
    queue = queue.then(async () => {
      if (mine !== generation) return;
      try { await ensureWorker(); } catch (err) { return; }
      if (mine !== generation) return;
      await job(() => mine === generation);
    }).catch((err) => setStatus("Error: " + err.message)).finally(() => setBusy(-1));
    return queue;
  }

  function runCell(target) {
    return schedule(async (alive) => {
      const started = performance.now();
      for (const c of cells) {
        if (c.i >= target) break;
        if (executed.has(c.i)) continue;
        setStatus(`Running the earlier cells first (${c.i < target ? "cell index " + c.i : ""})\u2026`);
        const ok = await execute(c.i, target);
        if (!alive()) return;
        if (!ok) { setStatus("An earlier cell failed: see the output below the cell you ran."); return; }
      }
      setStatus("Running\u2026");
      const ok = await execute(target, target);
      if (!alive()) return;
      setStatus(`${ok ? "Ran" : "Error in"} the cell (${((performance.now() - started) / 1000).toFixed(1)} s). ${info}`);
    });
  }

  function runAll() {
    delete bar.dataset.ranAll;
    return schedule(async (alive) => {
      const started = performance.now();
      const finish = () => { bar.dataset.seconds = ((performance.now() - started) / 1000).toFixed(1); };
      for (const c of cells) {
        setStatus(`Running all cells: ${cells.indexOf(c) + 1} of ${cells.length}\u2026`);
        const ok = await execute(c.i, views.get(c.i) && views.get(c.i).editor ? c.i : nearestVisible(c.i));
        if (!alive()) return;
        if (!ok) {
          finish();
          const where = views.get(c.i) && views.get(c.i).editor ? "" : " in a setup cell hidden from the page";
          setStatus(`Run all stopped at an error${where} (cell ${cells.indexOf(c) + 1} of ${cells.length}): ` +
                    "its traceback is below the cell marked Error.");
          const shownAt = views.get(nearestVisible(c.i));
          if (where && shownAt && shownAt.state) shownAt.state.textContent = "Error (a hidden setup cell, see below)";
          return;
        }
      }
      setStatus(`Ran all ${cells.length} cells in ${((performance.now() - started) / 1000).toFixed(1)} s. ${info}`);
      finish();
      bar.dataset.ranAll = "done";
    });
  }

  // Where a hidden cell's errors and notes are shown during Run all: the nearest cell before it
  // that the reader sees (not folded into a closed solution), else the nearest after it.
  function nearestVisible(index) {
    const shown = (c) => views.get(c.i) && views.get(c.i).editor && views.get(c.i).cell.getClientRects().length > 0;
    const earlier = [...cells].reverse().find((c) => c.i < index && shown(c));
    const later = cells.find((c) => c.i > index && shown(c));
    return (earlier || later || { i: index }).i;
  }

  function stop() {
    generation += 1;
    if (worker) worker.terminate();
    worker = null; ready = null; executed = new Set();
    if (current) {
      const view = views.get(current.index);
      if (view && view.state) view.state.textContent = "Stopped";
      const done = current;
      current = null;
      done.resolve(null);
    }
    setStatus("Stopped. The next Run starts Python again and reruns the earlier cells.");
  }

  bar.querySelector(".live-runall").addEventListener("click", () => runAll());
  stopButton.addEventListener("click", stop);
  // For tests and scripting: the same actions as the buttons.
  window.liveCode = { runCell, runAll, stop, views, cells, status: () => status.textContent };
})();
