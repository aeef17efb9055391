// assay ui: load each server-rendered fragment (a column's histogram, the full diff) into its
// placeholder, a few at a time.
// The fragments are server-rendered and escaped; this script only fetches and inserts them.
"use strict";
(function () {
  const boxes = Array.from(document.querySelectorAll("[data-src]"));
  let next = 0;
  async function worker() {
    while (next < boxes.length) {
      const box = boxes[next++];
      try {
        const response = await fetch(box.dataset.src, { credentials: "same-origin" });
        const html = await response.text();
        const holder = document.createElement("template");
        holder.innerHTML = html;
        box.replaceChildren(holder.content);
        box.classList.add("loaded");
      } catch (err) {
        box.classList.add("failed");
      }
    }
    if (!boxes.some((box) => !box.classList.contains("loaded") && !box.classList.contains("failed"))) {
      document.body.dataset.fragments = "loaded";
    }
  }
  if (boxes.length === 0) {
    document.body.dataset.fragments = "loaded";
  }
  for (let i = 0; i < 3; i++) worker();
})();
