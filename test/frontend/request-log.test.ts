import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { DeferredChildLogger } from '../../src/frontend/request-log.ts';
import { chatBody, type TestServer, testServer } from './helpers.ts';

/** A pino logger writing its JSON lines into an array. */
function memoryLogger(level = 'info') {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level }, sink), lines };
}

let server: TestServer | undefined;
afterEach(async () => {
  await server?.app.close();
  server = undefined;
});

describe('per-request loggers', () => {
  it('lines logged for a request carry its request id (prompt lines and failures)', async () => {
    const { logger, lines } = memoryLogger();
    server = await testServer({ failAfterTokens: 0 }, { logger, logPrompts: true });
    const response = await server.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: chatBody(),
    });
    expect(response.statusCode).toBe(500);
    const prompt = lines.find((l) => l.msg === 'prompt');
    const failure = lines.find((l) => l.msg === 'generation failed');
    expect(prompt?.reqId).toEqual(expect.any(String));
    expect(failure?.reqId).toBe(prompt?.reqId);
  });

  it('makes no pino child until something is logged, then one, with the bindings and options', () => {
    const { logger, lines } = memoryLogger('warn');
    let children = 0;
    const parent = {
      ...logger,
      level: logger.level,
      child: (bindings: Record<string, unknown>, options?: { level?: string }) => {
        children++;
        return logger.child(bindings, options);
      },
    } as unknown as typeof logger;
    const deferred = new DeferredChildLogger(parent, { reqId: 'req-7' }, { level: 'info' });
    expect(deferred.level).toBe('info');
    expect(children).toBe(0);
    deferred.info({ a: 1 }, 'first');
    deferred.warn('second');
    expect(children).toBe(1);
    expect(lines.map((l) => [l.reqId, l.msg, l.a])).toEqual([
      ['req-7', 'first', 1],
      ['req-7', 'second', undefined],
    ]);
    deferred.level = 'error';
    deferred.warn('dropped');
    expect(lines).toHaveLength(2);
    expect(deferred.child({ sub: true }).level).toBe('error');
  });
});
