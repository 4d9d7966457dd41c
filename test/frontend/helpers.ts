import type { FastifyInstance } from 'fastify';
import { MapModelRegistry } from '../../src/frontend/backend.ts';
import { createFrontendServer, type FrontendServerOptions } from '../../src/frontend/server.ts';
import { loadO200kTokenizer } from '../../src/tokens/tokenizer.ts';
import { FakeBackend, type FakeBackendOptions } from './fake-backend.ts';

export interface TestServer {
  readonly app: FastifyInstance;
  readonly backend: FakeBackend;
}

export async function testServer(
  backendOptions: Partial<FakeBackendOptions> = {},
  serverOptions: Partial<FrontendServerOptions> = {},
): Promise<TestServer> {
  const tokenizer = await loadO200kTokenizer();
  const backend = new FakeBackend({ tokenizer, ...backendOptions });
  const app = createFrontendServer({
    registry: new MapModelRegistry([backend]),
    tokenizer,
    ...serverOptions,
  });
  await app.ready();
  return { app, backend };
}

export const chatBody = (extra: Record<string, unknown> = {}) => ({
  model: 'fake-model',
  messages: [{ role: 'user', content: 'Hello' }],
  max_tokens: 3,
  ...extra,
});

/** Asserts OpenAI's error shape and returns the error object. */
export function expectOpenAiError(body: unknown): {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
} {
  const error = (body as { error?: unknown }).error as Record<string, unknown> | undefined;
  if (!error || typeof error.message !== 'string' || typeof error.type !== 'string') {
    throw new Error(`not an OpenAI error body: ${JSON.stringify(body)}`);
  }
  if (!('param' in error) || !('code' in error))
    throw new Error(`missing param/code: ${JSON.stringify(body)}`);
  return error as { message: string; type: string; param: string | null; code: string | null };
}
