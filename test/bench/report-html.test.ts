import { readFile, writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateTrace } from '../../src/bench/generate.ts';
import { runReplay } from '../../src/bench/replay.ts';
import { writeReport } from '../../src/bench/report.ts';
import { renderReportHtml } from '../../src/bench/report-html.ts';
import { POLICY_NAMES } from '../../src/routing/policy.ts';
import { launchChromium } from '../helpers/browser.ts';
import { tempDir } from '../helpers/temp-dir.ts';

const inTemp = tempDir('kvgate-html-');
let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

describe('HTML report', () => {
  it('opens in headless Chromium without errors and draws one TTFT curve per policy', async () => {
    const requests = generateTrace({
      seed: 2,
      arrivals: 80,
      rate: 30,
      groups: 4,
      prefixBlocks: 4,
      bestOf: 3,
      bestOfFraction: 0.2,
    });
    const { report } = await runReplay(
      { requests, skipped: [] },
      { source: 'gen.jsonl', workers: 2, dpSize: 2, seed: 5 },
    );
    const paths = await writeReport(inTemp(), report);
    const html = await readFile(paths.html, 'utf8');
    // Self-contained: no external scripts, styles, images or fonts.
    expect(html.replaceAll('http://www.w3.org/2000/svg', '')).not.toMatch(
      /<script[^>]+src=|<link[^>]+href=|<img|url\(|@import|https?:\/\//,
    );

    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') errors.push(msg.text());
    });
    page.on('requestfailed', (req) => errors.push(`request failed: ${req.url()}`));
    await page.goto(pathToFileURL(paths.html).href, { waitUntil: 'load' });
    expect(errors).toEqual([]);

    const curves = await page.$$eval('[data-policy]', (els) =>
      els.map((el) => ({
        tag: el.tagName,
        policy: el.getAttribute('data-policy'),
        points: (el.getAttribute('d') ?? '').split('L').length,
      })),
    );
    expect(curves).toHaveLength(POLICY_NAMES.length);
    expect(curves.map((c) => c.policy)).toEqual([...POLICY_NAMES]);
    for (const c of curves) {
      expect(c.tag).toBe('path');
      expect(c.points).toBe(101);
    }
    // Hit-rate bars: one per policy plus the oracle; a load cell per (policy, worker, rank).
    expect(await page.locator('#hits rect').count()).toBe(POLICY_NAMES.length + 1);
    expect(await page.locator('#load rect').count()).toBe(POLICY_NAMES.length * 4);
    expect(await page.locator('#table tbody tr').count()).toBe(POLICY_NAMES.length);
    expect(await page.locator('#summary').textContent()).toContain(`gen.jsonl: ${requests.length} requests`);
    await page.close();
  });

  it('cannot be injected through a policy or trace name', async () => {
    const requests = generateTrace({ seed: 1, arrivals: 5 });
    const { report } = await runReplay(
      { requests, skipped: [] },
      { source: 'x', workers: 1, policies: ['kv'] },
    );
    const evil = {
      ...report,
      trace: { ...report.trace, source: '</script><script>window.__pwned = 1</script>' },
      policies: report.policies.map((p) => ({ ...p, policy: '<img src=x onerror="window.__pwned=2">' })),
    };
    const path = inTemp('evil.html');
    await writeFile(path, renderReportHtml(evil));
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(pathToFileURL(path).href, { waitUntil: 'load' });
    expect(errors).toEqual([]);
    expect(await page.evaluate(() => (globalThis as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(await page.locator('[data-policy]').getAttribute('data-policy')).toBe(
      '<img src=x onerror="window.__pwned=2">',
    );
    await page.close();
  });
});
