import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DashboardData } from '../../src/frontend/dashboard.ts';
import { listenFrontend } from '../../src/frontend/server.ts';
import { launchChromium } from '../helpers/browser.ts';
import { type TestServer, testServer } from './helpers.ts';

const data: DashboardData = {
  workers: [
    {
      workerId: 18446744073709551557n,
      model: 'fake-model',
      role: 'aggregated',
      ranks: [
        {
          dpRank: 0,
          activeDecodeBlocks: 40,
          activePrefillTokens: 512,
          kvUsage: 0.25,
          hitRate: 0.5,
          totalBlocks: 160,
        },
        {
          dpRank: 1,
          activeDecodeBlocks: 80,
          activePrefillTokens: 0,
          kvUsage: 0.5,
          hitRate: 0.75,
          totalBlocks: 160,
        },
      ],
    },
    {
      workerId: 3n,
      role: 'decode',
      ranks: [{ dpRank: 0, activeDecodeBlocks: 1, activePrefillTokens: 0, kvUsage: 0, hitRate: 0 }],
    },
  ],
};

let server: TestServer;
beforeAll(async () => {
  server = await testServer({}, { dashboardData: () => data, apiKeys: ['sk-dash'] });
});
afterAll(async () => {
  await server.app.close();
});

describe('dashboard', () => {
  it('/dashboard serves one self-contained HTML page (open even with API keys)', async () => {
    const response = await server.app.inject({ method: 'GET', url: '/dashboard' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toContain('text/html');
    expect(response.body).toContain('<table>');
    expect(response.body).not.toMatch(/(src|href)=["']?https?:/);
  });

  it('/dashboard/data returns the provider data as JSON, u64 ids exact, behind the API key', async () => {
    expect((await server.app.inject({ method: 'GET', url: '/dashboard/data' })).statusCode).toBe(401);
    const response = await server.app.inject({
      method: 'GET',
      url: '/dashboard/data',
      headers: { authorization: 'Bearer sk-dash' },
    });
    expect(response.statusCode).toBe(200);
    expect(response.body).toContain('"workerId":18446744073709551557');
    const body = response.json();
    expect(body.workers).toHaveLength(2);
    expect(body.workers[0].ranks[1]).toMatchObject({ dpRank: 1, activeDecodeBlocks: 80, hitRate: 0.75 });
    expect(body.inflight).toEqual({});
  });

  describe('in a browser', () => {
    let browser: Browser;
    beforeAll(async () => {
      browser = await launchChromium();
    });
    afterAll(async () => {
      await browser?.close();
    });

    it('draws one row per worker × rank from /dashboard/data', async () => {
      const { url } = await listenFrontend(server.app, { host: '127.0.0.1', port: 0 });
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${url}/dashboard#key=sk-dash`);
      await page.waitForSelector('tr[data-rank]');
      const rows = await page.$$eval('#rows tr', (trs) =>
        trs.map((tr) => [...tr.children].map((td) => td.textContent)),
      );
      expect(rows).toHaveLength(3);
      expect(rows[0].slice(0, 4)).toEqual(['18446744073709551557', 'fake-model', 'aggregated', '0']);
      expect(rows[1][4]).toContain('80');
      expect(rows[1][7]).toContain('75.0%');
      expect(await page.textContent('#status')).toContain('updated');
      expect(errors).toEqual([]);
      await page.close();
    });
  });
});
