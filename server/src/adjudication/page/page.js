// The examiner page's only script (no build step): zoom and pan of each finger's prints, and
// the keyboard shortcuts of the three decisions (d, n, i). The page works without it (buttons).
"use strict";

function zoomAndPan(svg) {
  const base = svg.viewBox.baseVal;
  const home = [base.x, base.y, base.width, base.height];
  let drag = null;
  svg.addEventListener("wheel", (e) => {
    e.preventDefault();
    const k = e.deltaY < 0 ? 0.8 : 1.25;
    const r = svg.getBoundingClientRect();
    const fx = (e.clientX - r.left) / r.width, fy = (e.clientY - r.top) / r.height;
    const w = base.width * k, h = base.height * k;
    base.x += (base.width - w) * fx;
    base.y += (base.height - h) * fy;
    base.width = w;
    base.height = h;
  }, { passive: false });
  svg.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, y: e.clientY };
    svg.setPointerCapture(e.pointerId);
  });
  svg.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const r = svg.getBoundingClientRect();
    base.x -= (e.clientX - drag.x) * base.width / r.width;
    base.y -= (e.clientY - drag.y) * base.height / r.height;
    drag = { x: e.clientX, y: e.clientY };
  });
  svg.addEventListener("pointerup", () => { drag = null; });
  svg.addEventListener("dblclick", () => {
    [base.x, base.y, base.width, base.height] = home;
  });
}

function shortcuts(form) {
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target instanceof HTMLInputElement) return;
    const button = form.querySelector(`button[data-key="${e.key.toLowerCase()}"]`);
    if (!button) return;
    e.preventDefault();
    form.requestSubmit(button);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("svg.prints").forEach(zoomAndPan);
  const form = document.getElementById("decide");
  if (form) shortcuts(form);
  document.body.dataset.ready = "1";
});
