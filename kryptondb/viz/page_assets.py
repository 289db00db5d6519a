"""The plan page's style sheet and scripts, inlined into every page (nothing is fetched).

GUARD runs first, in <head>: it writes every uncaught error, rejected promise and
console.error into ``#page-errors`` (shown at the top of the page and visible to
``chromium --dump-dom``). SCRIPT links a layer's table row and its projective-field tile (hover
either to highlight both) and finally marks ``<html data-ready="yes">``, so a test can tell that
the scripts ran to the end.
"""

from __future__ import annotations

CSS = """\
:root { --ink: #1a1a1a; --muted: #5a5a5a; --rule: #d8d8d8; --region: #e8743b;
        --context: #3b6fb6; --capped: #c0282d; --time: #7b4fb0; }
* { box-sizing: border-box; }
body { margin: 20px 20px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--ink); background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 26px 0 8px; border-bottom: 1px solid var(--rule); }
h3 { font-size: 14px; margin: 16px 0 6px; }
code, pre, .statement { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.statement { background: #f6f6f6; border: 1px solid var(--rule); border-radius: 4px;
             padding: 6px 10px; white-space: pre-wrap; word-break: break-word; margin: 6px 0; }
.setup { color: var(--muted); margin: 4px 0; }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px;
         background: #eee; color: var(--muted); vertical-align: middle; }
.badge.analyzed { background: #e6f2e0; color: #2d6a1f; }
.top { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
.top .dag { flex: 1 1 520px; min-width: 0; margin: 0; max-height: 560px; overflow: auto;
            border: 1px solid var(--rule); border-radius: 4px; }
.top .dag svg { max-width: 100%; height: auto; display: block; margin: 0 auto; }
.top .side { flex: 1 1 520px; min-width: 0; }
.top .side h2 { margin-top: 14px; }
.result { margin: 0; }
.result img { max-width: 100%; max-height: 240px; border: 1px solid var(--rule);
              border-radius: 4px; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 4px; }
table { border-collapse: collapse; }
.facts th { text-align: left; font-weight: 600; padding: 2px 14px 2px 0; vertical-align: top; }
.facts td { padding: 2px 0; max-width: 720px; }
.choice h3 { margin: 10px 0 4px; }
.choice .picked { color: var(--region); }
.choice .reason { margin: 0 0 6px; }
.predicted { display: flex; align-items: center; gap: 8px; margin: 2px 0; }
.predicted .label { width: 90px; } .predicted .bar { width: 180px; }
.stages { font-size: 13px; } .stages caption { text-align: left; font-weight: 600; }
.stages td, .stages th { padding: 1px 10px 1px 0; }
.table-box { overflow-x: auto; }
table.layers { font-size: 12px; width: 100%; }
.layers th { text-align: left; font-weight: 600; border-bottom: 2px solid #999;
             padding: 4px 4px; white-space: nowrap; position: sticky; top: 0; background: #fff; }
.layers td { padding: 2px 4px; border-bottom: 1px solid #eee; white-space: nowrap; }
.layers .num { text-align: right; font-variant-numeric: tabular-nums; }
.layers tr.seg-1 td { background: #fafafa; }
.layers tr.hot td, .layers tr:hover td { background: #fff1e3; }
.bar { display: inline-block; width: 36px; height: 9px; background: #eee; border-radius: 2px;
       vertical-align: middle; margin-right: 6px; overflow: hidden; }
.bar > span { display: block; height: 100%; background: var(--region); }
.bar.time > span { background: var(--time); }
.predicted .bar:not(.picked) > span { background: #999; }
.pct { display: inline-block; min-width: 38px; text-align: right;
       font-variant-numeric: tabular-nums; }
.field-figure { margin: 0; overflow-x: auto; }
svg.field { max-width: 100%; height: auto; }
.pf-tile.hot .pf-map { stroke: var(--region); stroke-width: 2.5; }
.key { display: inline-block; width: 12px; height: 10px; margin: 0 3px 0 10px;
       vertical-align: middle; }
.key.region { background: var(--region); } .key.capped { background: var(--capped); }
.key.context { border: 1.5px dashed var(--context); }
.note { color: var(--muted); }
#page-errors { color: #a00; white-space: pre-wrap; }
#page-errors:empty { display: none; }
details pre { font-size: 12px; background: #f6f6f6; border: 1px solid var(--rule);
              border-radius: 4px; padding: 10px; overflow-x: auto; }"""

GUARD = """\
(function () {
  var seen = [];
  function show() {
    var box = document.getElementById("page-errors");
    if (box) { box.textContent = seen.join("\\n"); }
  }
  function note(text) { seen.push(text); show(); }
  window.addEventListener("error", function (e) {
    note("page error: " + (e.message || e.type) + (e.lineno ? " (line " + e.lineno + ")" : ""));
  });
  window.addEventListener("unhandledrejection", function (e) {
    note("page error: unhandled rejection: " + e.reason);
  });
  var original = console.error;
  console.error = function () {
    note("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
  document.addEventListener("DOMContentLoaded", show);  // errors from before the box existed
})();"""

SCRIPT = """\
(function () {
  function all(layer) {
    return document.querySelectorAll('[data-layer="' + CSS.escape(layer) + '"]');
  }
  function mark(layer, on) {
    all(layer).forEach(function (el) { el.classList.toggle("hot", on); });
  }
  document.querySelectorAll("tr.layer-row, g.pf-tile").forEach(function (el) {
    var layer = el.getAttribute("data-layer");
    if (!layer) { return; }
    el.addEventListener("mouseenter", function () { mark(layer, true); });
    el.addEventListener("mouseleave", function () { mark(layer, false); });
  });
  document.documentElement.setAttribute("data-ready", "yes");
})();"""
