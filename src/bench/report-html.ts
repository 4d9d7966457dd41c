/**
 * A self-contained HTML page for a replay report: the report JSON is embedded in the page and an
 * inline script draws SVG charts with DOM calls (no external assets, no string-built markup from
 * data, so policy names cannot inject anything). Charts: TTFT CDF (one `path[data-policy]` per
 * policy, the only elements carrying `data-policy`), hit rate against the oracle, per-(worker, rank)
 * busy time, and a summary table.
 */
import type { ReplayReport } from './report.ts';

/** JSON safe inside a `<script type="application/json">` element. */
function embedJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

const STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; margin: 24px auto; max-width: 1180px;
  color: #1d2329; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 6px; }
p.sub { color: #5b6570; margin: 0 0 12px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
#table { overflow-x: auto; }
th, td { padding: 4px 6px; border-bottom: 1px solid #e3e7eb; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f6f8; font-weight: 600; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 12px system-ui, sans-serif; fill: #3a434c; }
.axis line, .axis path { stroke: #9aa4ae; }
.grid { stroke: #eceff2; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; margin: 6px 0; }
.legend span { display: inline-flex; align-items: center; gap: 6px; }
.legend i { display: inline-block; width: 14px; height: 4px; border-radius: 2px; }
.note { color: #5b6570; font-size: 13px; }
`;

const SCRIPT = `
(function () {
  'use strict';
  var SVG = 'http://www.w3.org/2000/svg';
  var report = JSON.parse(document.getElementById('report-data').textContent);
  var COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];
  var policies = report.policies;
  function color(i) { return COLORS[i % COLORS.length]; }
  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    for (var k in attrs) node.setAttribute(k, String(attrs[k]));
    if (parent) parent.appendChild(node);
    return node;
  }
  function text(parent, x, y, str, anchor) {
    var t = el('text', { x: x, y: y, 'text-anchor': anchor || 'start' }, parent);
    t.textContent = str;
    return t;
  }
  function fmtMs(v) {
    if (v >= 10000) return (v / 1000).toFixed(0) + ' s';
    if (v >= 1000) return (v / 1000).toFixed(1) + ' s';
    if (v >= 10) return v.toFixed(0) + ' ms';
    return v.toFixed(1) + ' ms';
  }
  function pct(v) { return (100 * v).toFixed(1) + '%'; }
  function legend(container) {
    var box = document.createElement('div');
    box.className = 'legend';
    policies.forEach(function (p, i) {
      var s = document.createElement('span');
      var sw = document.createElement('i');
      sw.style.background = color(i);
      s.appendChild(sw);
      s.appendChild(document.createTextNode(p.policy));
      box.appendChild(s);
    });
    container.appendChild(box);
  }

  function drawCdf(container) {
    var W = 980, H = 380, L = 60, R = 20, T = 14, B = 44;
    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'TTFT CDF per policy' }, container);
    var lo = Infinity, hi = 0;
    policies.forEach(function (p) {
      p.ttftCdfMs.forEach(function (v) { if (v > 0 && v < lo) lo = v; if (v > hi) hi = v; });
    });
    if (!isFinite(lo)) { lo = 0.1; hi = 1; }
    if (hi <= lo) hi = lo * 10;
    var useLog = hi / lo > 50;
    var x0 = useLog ? Math.log10(lo) : 0, x1 = useLog ? Math.log10(hi) : hi;
    function sx(v) {
      var u = useLog ? Math.log10(Math.max(v, lo)) : v;
      return L + ((u - x0) / (x1 - x0 || 1)) * (W - L - R);
    }
    function sy(q) { return T + (1 - q) * (H - T - B); }
    for (var q = 0; q <= 10; q++) {
      el('line', { x1: L, x2: W - R, y1: sy(q / 10), y2: sy(q / 10), class: 'grid' }, svg);
      text(svg, L - 8, sy(q / 10) + 4, (q * 10) + '%', 'end');
    }
    var ticks = [];
    if (useLog) {
      for (var e = Math.floor(x0); e <= Math.ceil(x1); e++) {
        [1, 2, 5].forEach(function (m) {
          var v = m * Math.pow(10, e);
          if (v >= lo && v <= hi) ticks.push(v);
        });
      }
    } else {
      for (var k = 0; k <= 8; k++) ticks.push((hi * k) / 8);
    }
    ticks.forEach(function (v) {
      el('line', { x1: sx(v), x2: sx(v), y1: T, y2: H - B, class: 'grid' }, svg);
      text(svg, sx(v), H - B + 16, fmtMs(v), 'middle');
    });
    el('line', { x1: L, x2: W - R, y1: H - B, y2: H - B, class: 'axis', stroke: '#9aa4ae' }, svg);
    el('line', { x1: L, x2: L, y1: T, y2: H - B, class: 'axis', stroke: '#9aa4ae' }, svg);
    text(svg, (L + W - R) / 2, H - 8, 'time to first token' + (useLog ? ' (log scale)' : ''), 'middle');
    policies.forEach(function (p, i) {
      var pts = p.ttftCdfMs;
      if (pts.length === 0) return;
      var d = '';
      for (var j = 0; j < pts.length; j++) {
        d += (j === 0 ? 'M' : 'L') + sx(pts[j]).toFixed(1) + ',' + sy(j / (pts.length - 1)).toFixed(1);
      }
      var path = el('path', { d: d, fill: 'none', stroke: color(i), 'stroke-width': 2.2, class: 'cdf-curve', 'data-policy': p.policy }, svg);
      var title = el('title', {}, path);
      title.textContent = p.policy + ': p50 ' + fmtMs(p.ttftMs.p50) + ', p90 ' + fmtMs(p.ttftMs.p90) + ', p99 ' + fmtMs(p.ttftMs.p99);
    });
    legend(container);
  }

  function drawHitRates(container) {
    var bars = policies.map(function (p, i) { return { name: p.policy, value: p.hitRate, fill: color(i) }; });
    bars.push({ name: 'oracle (infinite cache)', value: report.oracle.hitRate, fill: '#b8c0c8' });
    var W = 980, rowH = 28, L = 190, R = 70, T = 8;
    var H = T + bars.length * rowH + 30;
    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'KV hit rate per policy and the oracle' }, container);
    function sx(v) { return L + v * (W - L - R); }
    for (var g = 0; g <= 10; g++) {
      el('line', { x1: sx(g / 10), x2: sx(g / 10), y1: T, y2: H - 24, class: 'grid' }, svg);
      text(svg, sx(g / 10), H - 8, (g * 10) + '%', 'middle');
    }
    bars.forEach(function (b, i) {
      var y = T + i * rowH;
      text(svg, L - 8, y + rowH / 2 + 4, b.name, 'end');
      el('rect', { x: L, y: y + 5, width: Math.max(0, sx(b.value) - L), height: rowH - 10, fill: b.fill, rx: 2 }, svg);
      text(svg, sx(b.value) + 6, y + rowH / 2 + 4, pct(b.value));
    });
    var ox = sx(report.oracle.hitRate);
    el('line', { x1: ox, x2: ox, y1: T, y2: H - 24, stroke: '#5b6570', 'stroke-dasharray': '4 3' }, svg);
  }

  function drawLoad(container) {
    var ranks = policies.length > 0 ? policies[0].ranks.length : 0;
    var maxBusy = 0;
    policies.forEach(function (p) { p.ranks.forEach(function (r) { if (r.busyMs > maxBusy) maxBusy = r.busyMs; }); });
    var L = 150, R = 90, T = 18, rowH = 26;
    var W = 980;
    // A small gap between workers, so each worker's ranks read as one group.
    var dp = report.settings.dpSize, workers = Math.ceil(ranks / dp), gap = dp > 1 ? 4 : 0;
    var cellW = ranks > 0 ? (W - L - R - gap * (workers - 1)) / ranks : 0;
    function cellX(j) { return L + j * cellW + Math.floor(j / dp) * gap; }
    var H = T + policies.length * rowH + 8;
    var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'busy time per worker and rank' }, container);
    text(svg, W - R + 8, 12, 'max/mean');
    policies.forEach(function (p, i) {
      var y = T + i * rowH;
      text(svg, L - 8, y + rowH / 2 + 4, p.policy, 'end');
      p.ranks.forEach(function (r, j) {
        var share = maxBusy > 0 ? r.busyMs / maxBusy : 0;
        var light = Math.round(96 - 62 * share);
        var cell = el('rect', { x: cellX(j), y: y + 2, width: Math.max(1, cellW - 1), height: rowH - 4,
          fill: 'hsl(210, 70%, ' + light + '%)' }, svg);
        var title = el('title', {}, cell);
        title.textContent = p.policy + ' worker ' + r.workerId + ' rank ' + r.dpRank + ': busy ' + fmtMs(r.busyMs) + ', ' + r.requests + ' requests';
      });
      text(svg, W - R + 8, y + rowH / 2 + 4, p.loadImbalance.toFixed(2) + '\\u00d7');
    });
  }

  function drawTable(container) {
    var cols = [
      ['policy', function (p) { return p.policy; }],
      ['TTFT p50', function (p) { return fmtMs(p.ttftMs.p50); }],
      ['TTFT p90', function (p) { return fmtMs(p.ttftMs.p90); }],
      ['TTFT p99', function (p) { return fmtMs(p.ttftMs.p99); }],
      ['ITL p50', function (p) { return fmtMs(p.itlMs.p50); }],
      ['ITL p99', function (p) { return fmtMs(p.itlMs.p99); }],
      ['E2E p50', function (p) { return fmtMs(p.e2eMs.p50); }],
      ['E2E p99', function (p) { return fmtMs(p.e2eMs.p99); }],
      ['out tok/s', function (p) { return p.outputTokensPerS.toFixed(0); }],
      ['hit rate', function (p) { return pct(p.hitRate); }],
      ['load max/mean', function (p) { return p.loadImbalance.toFixed(2); }],
      ['preempted', function (p) { return String(p.preemptions); }],
      ['done', function (p) { return p.completed + '/' + p.requests; }],
    ];
    var table = document.createElement('table');
    var head = table.createTHead().insertRow();
    cols.forEach(function (c) { var th = document.createElement('th'); th.textContent = c[0]; head.appendChild(th); });
    var body = table.createTBody();
    policies.forEach(function (p) {
      var row = body.insertRow();
      cols.forEach(function (c) { row.insertCell().textContent = c[1](p); });
    });
    container.appendChild(table);
  }

  var s = report.settings, t = report.trace;
  document.getElementById('summary').textContent =
    t.source + ': ' + t.requests + ' requests (' + t.promptTokens + ' prompt tokens), rate \\u00d7' + s.rate +
    ' (' + fmtMs(t.replayedDurationMs) + ' of arrivals), ' + s.workers + ' workers \\u00d7 ' + s.dpSize +
    ' ranks, block size ' + s.blockSize + ', ' + s.numGpuBlocks + ' KV blocks per rank, seed ' + s.seed +
    '. Oracle hit rate ' + pct(report.oracle.hitRate) + '.';
  drawTable(document.getElementById('table'));
  drawCdf(document.getElementById('cdf'));
  drawHitRates(document.getElementById('hits'));
  drawLoad(document.getElementById('load'));
})();
`;

export function renderReportHtml(report: ReplayReport): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kvgate trace replay: routing policies against the oracle</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Trace replay: routing policies against the oracle</h1>
<p class="sub" id="summary"></p>
<div id="table"></div>
<h2>Time to first token, CDF</h2>
<p class="note">Virtual time: the share of requests whose first token came within the time on the x axis.</p>
<div id="cdf"></div>
<h2>KV cache hit rate</h2>
<p class="note">Prompt tokens served from the engines' prefix caches. The oracle is an infinite cache shared by all: a block hits if any earlier request had it (dashed line).</p>
<div id="hits"></div>
<h2>Load per (worker, rank)</h2>
<p class="note">Busy time of each rank's scheduler (darker is busier, one scale for all rows); right: max over mean.</p>
<div id="load"></div>
<script type="application/json" id="report-data">${embedJson(report)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
