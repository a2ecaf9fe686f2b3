/*
 * Search results without raw TeX. Sphinx builds each result's snippet from the text of the page
 * it fetches (searchtools.js, Search.htmlToText), where the math is still its TeX source, so
 * snippets read "\(\vec{h}_j = [\vec{h}^{\rightarrow}_j; ...". Before that text is taken, each
 * inline formula is spelled in plain characters (h_j = [h→_j; ...]) and each display formula
 * is left out.
 */
(() => {
  "use strict";

  const SYMBOLS = {
    alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", varepsilon: "ε", eta: "η",
    theta: "θ", lambda: "λ", mu: "μ", pi: "π", rho: "ρ", sigma: "σ", tau: "τ", phi: "φ",
    omega: "ω", Sigma: "Σ", Delta: "Δ", ell: "ℓ", infty: "∞", top: "ᵀ", times: "×",
    cdot: "·", cdots: "⋯", dots: "…", ldots: "…", sum: "Σ", prod: "Π", sqrt: "√", in: "∈",
    le: "≤", leq: "≤", ge: "≥", geq: "≥", ne: "≠", neq: "≠", approx: "≈", to: "→",
    rightarrow: "→", leftarrow: "←", odot: "⊙", partial: "∂", nabla: "∇", R: "ℝ", E: "E",
  };
  // Commands that only style their argument, and spacing: dropped, the argument kept.
  const DROPPED = /^(vec|mathbf|mathrm|mathit|mathcal|mathbb|boldsymbol|operatorname|text|textrm|left|right|big|Big|bigg|Bigg|quad|qquad|displaystyle|hat|tilde|bar)$/;

  const plain = (tex) => tex
    .replace(/^\\\(|\\\)$/g, "")
    .replace(/\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}/g, "($1)/($2)")
    .replace(/\\([A-Za-z]+)/g, (whole, name) =>
      name in SYMBOLS ? SYMBOLS[name] : DROPPED.test(name) ? "" : name)
    .replace(/\\[,;:! ]/g, " ")
    .replace(/[{}]/g, "")
    .replace(/\s+/g, " ")
    .trim();

  const install = () => {
    if (typeof Search === "undefined" || typeof Search.htmlToText !== "function") return;
    const original = Search.htmlToText;
    Search.htmlToText = (htmlString, anchor) => {
      const doc = new DOMParser().parseFromString(htmlString, "text/html");
      doc.querySelectorAll("div.math").forEach((el) => el.replaceWith(doc.createTextNode(" … ")));
      doc.querySelectorAll("span.math").forEach((el) =>
        el.replaceWith(doc.createTextNode(plain(el.textContent))));
      return original(doc.documentElement.outerHTML, anchor);
    };
  };
  // Sphinx loads searchtools.js after this file, and starts searching once the page is parsed.
  if (typeof Search !== "undefined") install();
  else document.addEventListener("DOMContentLoaded", install);
})();
