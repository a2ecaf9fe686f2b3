/*
 * Boxes that scroll sideways show it (see _static/attnbook.css): a formula, table or code block
 * wider than its box fades out on the side where more of it waits. Runs once MathJax has
 * typeset the page, and again whenever a box scrolls or the window changes size.
 */
(() => {
  "use strict";
  const SCROLLERS = [
    "div.math mjx-container",
    "span.math.attnbook-scroll",
    ".bd-content .pst-scrollable-table-container",
    ".bd-content div.highlight pre",
    ".bd-content div.cell_output pre",
  ].join(", ");

  // An inline formula longer than its line gets a scrolling box instead of being cut off.
  const widenInlineMath = () => {
    for (const span of document.querySelectorAll("span.math")) {
      const math = span.querySelector("mjx-math");
      if (math && math.getBoundingClientRect().width > span.clientWidth + 2) {
        span.classList.add("attnbook-scroll");
      }
    }
  };

  const mark = (box) => {
    const more = box.scrollWidth - box.clientWidth > 1;
    box.classList.toggle("attnbook-more-left", more && box.scrollLeft > 1);
    box.classList.toggle("attnbook-more-right",
      more && box.scrollLeft + box.clientWidth < box.scrollWidth - 1);
  };
  const markAll = () => document.querySelectorAll(SCROLLERS).forEach(mark);

  const start = () => {
    widenInlineMath();
    markAll();
    document.documentElement.dataset.attnbookScroll = "ready";  // for tests/test_layout.py
    document.addEventListener("scroll", (event) => {
      if (event.target instanceof Element && event.target.matches(SCROLLERS)) mark(event.target);
    }, true);
    window.addEventListener("resize", () => { widenInlineMath(); markAll(); });
  };

  window.addEventListener("load", () => {
    const typeset = window.MathJax && MathJax.startup && MathJax.startup.promise;
    (typeset || Promise.resolve()).then(start);
  });
})();
