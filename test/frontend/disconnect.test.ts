import { Agent, request as httpRequest } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { listenFrontend } from '../../src/frontend/server.ts';
import { chatBody, type TestServer, testServer } from './helpers.ts';

let server: TestServer | undefined;
afterEach(async () => {
  // fetch's pool opens a spare connection after an abort and keeps it ~4 s; do not wait for it.
  const closing = server?.app.close();
  server?.app.server.closeAllConnections();
  await closing;
  server = undefined;
});

async function waitFor(condition: () => boolean, ms = 2000): Promise<void> {
  const until = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('client disconnect', () => {
  it('mid-stream aborts the backend signal at once', async () => {
    server = await testServer({ delayMs: 20 });
    const { url } = await listenFrontend(server.app, { host: '127.0.0.1', port: 0 });
    const controller = new AbortController();
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chatBody({ max_tokens: 10_000, stream: true })),
      signal: controller.signal,
    });
    const reader = response.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('data: ');
    const signal = server.backend.signals[0];
    expect(signal.aborted).toBe(false);
    controller.abort();
    // The backend had 10,000 tokens × 20 ms to go: an abort seen within seconds came from the disconnect.
    await waitFor(() => signal.aborted, 5000);
  });

  it('before a non-streamed answer aborts the backend signal too', async () => {
    server = await testServer({ delayMs: 20 });
    const { port } = await listenFrontend(server.app, { host: '127.0.0.1', port: 0 });
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
    });
    req.on('error', () => {});
    req.end(JSON.stringify(chatBody({ max_tokens: 10_000 })));
    await waitFor(() => server!.backend.signals.length === 1);
    const signal = server.backend.signals[0];
    req.destroy();
    await waitFor(() => signal.aborted, 5000);
  });

  it('on a keep-alive connection, closing it cancels the request in flight and none that finished', async () => {
    server = await testServer({ delayMs: 20 });
    const { port } = await listenFrontend(server.app, { host: '127.0.0.1', port: 0 });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const post = (maxTokens: number) => {
      const req = httpRequest({
        host: '127.0.0.1',
        port,
        agent,
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json' },
      });
      req.on('error', () => {});
      const answered = new Promise<number>((resolve) =>
        req.on('response', (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        }),
      );
      req.end(JSON.stringify(chatBody({ max_tokens: maxTokens })));
      return { req, answered };
    };
    const first = post(2);
    expect(await first.answered).toBe(200);
    const second = post(10_000);
    await waitFor(() => server!.backend.signals.length === 2);
    expect(first.req.reusedSocket || second.req.reusedSocket).toBe(true); // one connection for both
    const [done, running] = server.backend.signals;
    second.req.destroy();
    await waitFor(() => running.aborted, 5000);
    expect(done.aborted).toBe(false);
    agent.destroy();
  });

  it('a backend that fails mid-stream ends the stream with an error event then [DONE]', async () => {
    server = await testServer({ failAfterTokens: 2 });
    const response = await server.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: chatBody({ max_tokens: 10, stream: true }),
    });
    expect(response.statusCode).toBe(200);
    const events = response.body.split('\n\n').filter((e) => e !== '');
    expect(events.at(-1)).toBe('data: [DONE]');
    const error = JSON.parse(events.at(-2)!.slice('data: '.length));
    expect(error.error).toMatchObject({ type: 'server_error' });
    expect(typeof error.error.message).toBe('string');
    expect(events.length).toBeGreaterThan(3); // content arrived before the failure
  });

  it('a backend that fails before any token gets a plain 500 OpenAI error, streamed or not', async () => {
    server = await testServer({ failAfterTokens: 0 });
    for (const stream of [false, true]) {
      const response = await server.app.inject({
        method: 'POST',
        url: '/v1/chat/completions',
        payload: chatBody({ stream }),
      });
      expect(response.statusCode).toBe(500);
      expect(response.json().error.type).toBe('server_error');
      expect(response.json().error.message).not.toContain('worker died'); // internals are not leaked
    }
  });
});
