/**
 * A live dashboard: `/dashboard` serves one self-contained HTML page (inline CSS and JS, no
 * external assets) that polls `/dashboard/data` every second and draws a table with bars of
 * workers × ranks (active decode blocks, prefill tokens, KV usage, hit rate). The data comes from
 * a provider function the owner of the server supplies (router and engine state); the page builds
 * its DOM with textContent only, so nothing in the data is ever interpreted as HTML. With API keys
 * on, open it as `/dashboard#key=YOUR_KEY`; the page sends the key as a bearer token.
 */
import type { FastifyInstance } from 'fastify';
import type { WorkerId } from '../kv/events.ts';
import { stringifyLossless } from '../runtime/codec.ts';
import type { FrontendMetrics } from './metrics.ts';

export interface DashboardRank {
  readonly dpRank: number;
  readonly activeDecodeBlocks: number;
  readonly activePrefillTokens: number;
  /** Fraction of the rank's KV blocks in use, 0..1. */
  readonly kvUsage: number;
  /** Prefix-cache hit rate, 0..1. */
  readonly hitRate: number;
  readonly totalBlocks?: number;
}

export interface DashboardWorker {
  readonly workerId: WorkerId;
  readonly model?: string;
  readonly role?: string;
  readonly ranks: readonly DashboardRank[];
}

export interface DashboardData {
  readonly workers: readonly DashboardWorker[];
}

export type DashboardProvider = () => DashboardData | Promise<DashboardData>;

export function registerDashboard(
  app: FastifyInstance,
  provider: DashboardProvider | undefined,
  metrics: FrontendMetrics,
): void {
  app.get('/dashboard', async (_request, reply) => {
    return reply
      .header('content-type', 'text/html; charset=utf-8')
      .header(
        'content-security-policy',
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
      )
      .send(DASHBOARD_HTML);
  });
  app.get('/dashboard/data', async (_request, reply) => {
    const data = provider ? await provider() : { workers: [] };
    const body = {
      generatedAt: new Date().toISOString(),
      inflight: metrics.inflightRequests(),
      workers: data.workers,
    };
    return reply
      .header('content-type', 'application/json; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(stringifyLossless(body));
  });
}

const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>kvgate dashboard</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5rem; color: #1d2330; background: #f7f8fa; }
  h1 { font-size: 1.2rem; margin: 0 0 .25rem; }
  #status { color: #5b6475; margin-bottom: 1rem; }
  table { border-collapse: collapse; background: #fff; min-width: 60rem; }
  th, td { padding: .35rem .6rem; border-bottom: 1px solid #e3e6eb; text-align: left; white-space: nowrap; }
  th { background: #eef1f5; font-weight: 600; }
  .bar { position: relative; width: 9rem; height: 1rem; background: #eef1f5; border-radius: 3px; overflow: hidden; display: inline-block; vertical-align: middle; }
  .fill { position: absolute; inset: 0 auto 0 0; background: #4c7bd9; }
  .fill.hit { background: #3aa76d; } .fill.kv { background: #d98b4c; }
  .num { display: inline-block; min-width: 4.5rem; text-align: right; margin-left: .4rem; font-variant-numeric: tabular-nums; }
</style>
</head>
<body>
<h1>kvgate: workers &times; ranks</h1>
<div id="status">loading&hellip;</div>
<table>
  <thead><tr><th>worker</th><th>model</th><th>role</th><th>rank</th><th>active decode blocks</th><th>prefill tokens</th><th>KV usage</th><th>hit rate</th></tr></thead>
  <tbody id="rows"></tbody>
</table>
<script>
(function () {
  var rows = document.getElementById('rows');
  var status = document.getElementById('status');
  // With API keys on, open the page as /dashboard#key=YOUR_KEY (a fragment never reaches the server logs).
  var key = new URLSearchParams(location.hash.slice(1)).get('key');
  var headers = key ? { authorization: 'Bearer ' + key } : {};
  function cell(tr, text) { var td = document.createElement('td'); td.textContent = text; tr.appendChild(td); return td; }
  function bar(tr, value, max, label, kind) {
    var td = document.createElement('td');
    var outer = document.createElement('span'); outer.className = 'bar';
    var fill = document.createElement('span'); fill.className = 'fill' + (kind ? ' ' + kind : '');
    var ratio = max > 0 ? Math.max(0, Math.min(1, value / max)) : 0;
    fill.style.width = (ratio * 100).toFixed(1) + '%';
    outer.appendChild(fill); td.appendChild(outer);
    var num = document.createElement('span'); num.className = 'num'; num.textContent = label; td.appendChild(num);
    tr.appendChild(td);
  }
  function render(data) {
    var maxBlocks = 1, maxPrefill = 1;
    data.workers.forEach(function (w) { w.ranks.forEach(function (r) {
      maxBlocks = Math.max(maxBlocks, r.totalBlocks || r.activeDecodeBlocks);
      maxPrefill = Math.max(maxPrefill, r.activePrefillTokens);
    }); });
    var body = document.createDocumentFragment();
    data.workers.forEach(function (w) { w.ranks.forEach(function (r) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-worker', String(w.workerId)); tr.setAttribute('data-rank', String(r.dpRank));
      cell(tr, String(w.workerId)); cell(tr, w.model || ''); cell(tr, w.role || ''); cell(tr, String(r.dpRank));
      bar(tr, r.activeDecodeBlocks, r.totalBlocks || maxBlocks, String(r.activeDecodeBlocks));
      bar(tr, r.activePrefillTokens, maxPrefill, String(r.activePrefillTokens));
      bar(tr, r.kvUsage, 1, (r.kvUsage * 100).toFixed(1) + '%', 'kv');
      bar(tr, r.hitRate, 1, (r.hitRate * 100).toFixed(1) + '%', 'hit');
      body.appendChild(tr);
    }); });
    rows.replaceChildren(body);
    var inflight = Object.keys(data.inflight).map(function (m) { return m + ': ' + data.inflight[m]; }).join(', ');
    status.textContent = 'updated ' + data.generatedAt + ' | in flight: ' + (inflight || 'none');
  }
  function poll() {
    fetch('/dashboard/data', { cache: 'no-store', headers: headers })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.text(); })
      .then(function (text) {
        // worker ids are u64: keep them exact by quoting long integers before JSON.parse
        render(JSON.parse(text.replace(/("workerId":)(\\d+)/g, '$1"$2"')));
      })
      .catch(function (e) { status.textContent = 'error: ' + e.message; })
      .then(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
</script>
</body>
</html>
`;
