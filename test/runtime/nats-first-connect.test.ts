import { afterEach, describe, expect, it, vi } from 'vitest';
import { connectNats } from '../../src/runtime/nats/connection.ts';
import { log } from '../../src/util/log.ts';
import { type NatsServer, preparedNats } from '../support/servers.ts';

const WAITING = 'runtime: waiting for NATS (not reachable yet); retrying';

let nats: NatsServer | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await nats?.dispose();
  nats = undefined;
});

describe('connectNats before NATS is up', () => {
  it('keeps saying it waits, connects once NATS starts, then stops saying so', async () => {
    nats = await preparedNats();
    const warn = vi.spyOn(log, 'warn');
    const waitingNotices = () => warn.mock.calls.filter((call) => call[1] === WAITING).length;
    const connecting = connectNats({ servers: nats.url, reconnectTimeWaitMs: 50, firstConnectNoticeMs: 50 });
    await vi.waitFor(() => expect(waitingNotices()).toBeGreaterThanOrEqual(2), { timeout: 5_000 });
    expect(warn.mock.calls.find((call) => call[1] === WAITING)?.[0]).toEqual({ servers: nats.url });
    await nats.start();
    const nc = await connecting;
    try {
      const after = waitingNotices();
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(waitingNotices()).toBe(after);
      expect(nc.isClosed()).toBe(false);
    } finally {
      await nc.close();
    }
  });

  it('an unreadable creds file fails at once and leaves no notice running', async () => {
    const warn = vi.spyOn(log, 'warn');
    await expect(
      connectNats({
        servers: 'nats://127.0.0.1:1',
        credsFile: '/nonexistent/kvgate.creds',
        firstConnectNoticeMs: 20,
      }),
    ).rejects.toThrow(/ENOENT/);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(warn.mock.calls.filter((call) => call[1] === WAITING)).toHaveLength(0);
  });
});
