/**
 * The OpenAI-compatible HTTP frontend (fastify 5): `/v1/chat/completions`, `/v1/completions`,
 * `/v1/models`, `/health`, `/live`, `/metrics` and the dashboard, in front of a `ModelRegistry`.
 *
 * Admission: optional bearer API keys (everything but `/live`, `/health` and the dashboard's
 * static page needs one), a body size limit (413), 503 when shutting down or when the model's
 * backend reports every rank busy, and an optional cap on requests in flight (429). Prompts are
 * never logged unless `logPrompts` is set. Every error body is OpenAI's shape.
 */
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { stringifyLossless } from '../runtime/codec.ts';
import { loadO200kTokenizer, type Tokenizer } from '../tokens/tokenizer.ts';
import type { Logger } from '../util/log.ts';
import { log as defaultLog } from '../util/log.ts';
import { ApiKeyChecker } from './auth.ts';
import type { ModelBackend, ModelRegistry } from './backend.ts';
import { registerBusyThreshold } from './busy-threshold.ts';
import { type DashboardProvider, registerDashboard } from './dashboard.ts';
import { ApiError, toApiError } from './errors.ts';
import { parseJsonLossless } from './json.ts';
import { type Endpoint, FrontendMetrics } from './metrics.ts';
import { nvextNeedsLossless, type RequestHeaders } from './nvext.ts';
import { chatPlan, completionPlan } from './preprocess.ts';
import { chatCompletionSchema, completionSchema, parseBody } from './protocol.ts';
import { deferredChildLogger } from './request-log.ts';
import { type GenerationPlan, serveGeneration } from './serving.ts';

export const DEFAULT_BODY_LIMIT = 8 * 1024 * 1024;
export const DEFAULT_MAX_TOKENS = 1024;

export interface FrontendServerOptions {
  readonly registry: ModelRegistry;
  /** Bearer keys; empty or absent = no authentication. */
  readonly apiKeys?: readonly string[];
  /** Largest accepted request body in bytes (default 8 MiB); larger gets 413. */
  readonly bodyLimit?: number;
  /** Log each request's prompt text (info level). Default false: prompts never reach the logs. */
  readonly logPrompts?: boolean;
  /** Tokenizer for models whose backend names none; default o200k_base. */
  readonly tokenizer?: Tokenizer | Promise<Tokenizer>;
  /** Chat max tokens when a request sets none (capped by the model's context length). */
  readonly defaultMaxTokens?: number;
  /** Requests in flight above which new ones get 429; absent = unlimited. */
  readonly maxInflight?: number;
  /** Metrics to record into (the owner feeds its per-worker gauges); created when absent. */
  readonly metrics?: FrontendMetrics;
  /** Data for /dashboard/data (router and engine state). */
  readonly dashboardData?: DashboardProvider;
  /** Runs before each /metrics scrape (the owner refreshes gauges read fresh on every scrape). */
  readonly beforeMetricsScrape?: () => void;
  readonly logger?: Logger;
}

/** Handle on the frontend's state, available as `app.frontend`. */
export interface FrontendHandle {
  readonly metrics: FrontendMetrics;
  readonly shuttingDown: boolean;
  /** /live starts answering 503 and new generation requests are refused; in-flight ones finish. */
  beginShutdown(): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    frontend: FrontendHandle;
  }
}

const OPEN_PATHS = new Set(['/live', '/health', '/dashboard']);

export function createFrontendServer(options: FrontendServerOptions): FastifyInstance {
  const bodyLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const logger = options.logger ?? defaultLog;
  const metrics = options.metrics ?? new FrontendMetrics();
  const keys = new ApiKeyChecker(options.apiKeys ?? []);
  const defaultMaxTokens = options.defaultMaxTokens ?? DEFAULT_MAX_TOKENS;
  let defaultTokenizer: Promise<Tokenizer> | undefined;
  let loadedTokenizer: Tokenizer | undefined; // once loaded, used without awaiting
  const loadDefaultTokenizer = (): Promise<Tokenizer> => {
    defaultTokenizer ??= Promise.resolve(options.tokenizer ?? loadO200kTokenizer()).then((tokenizer) => {
      loadedTokenizer = tokenizer;
      return tokenizer;
    });
    return defaultTokenizer;
  };
  const tokenizerFor = (backend: ModelBackend): Tokenizer | Promise<Tokenizer> =>
    backend.tokenizer ?? loadedTokenizer ?? loadDefaultTokenizer();
  let shuttingDown = false;
  let inflight = 0;

  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // request.log is made on first use (most requests log nothing).
    childLoggerFactory: deferredChildLogger,
    bodyLimit,
    forceCloseConnections: 'idle',
    // Requests arriving while closing get our own OpenAI-shaped 503 (see shuttingDown).
    return503OnClosing: false,
  });
  const handle: FrontendHandle = {
    metrics,
    get shuttingDown() {
      return shuttingDown;
    },
    beginShutdown() {
      shuttingDown = true;
    },
  };
  app.decorate('frontend', handle);
  app.addHook('preClose', async () => handle.beginShutdown());
  app.addHook('onReady', async () => {
    // Load the default tokenizer before the first request instead of during it.
    await loadDefaultTokenizer();
  });

  // Every body is parsed as JSON whatever its content type (curl -d sends form encoding), losslessly
  // for u64 ids; the size limit applies while reading.
  app.removeAllContentTypeParsers();
  const parseBodyText = (body: string | Buffer, done: (error: Error | null, value?: unknown) => void) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    try {
      done(null, parseJsonLossless(text, nvextNeedsLossless));
    } catch (error) {
      if (text.trim() === '') {
        done(
          new ApiError('The request body is empty; send a JSON object.', {
            status: 400,
            code: 'invalid_json',
          }),
        );
        return;
      }
      const detail = error instanceof Error ? error.message : 'parse error';
      done(
        new ApiError(`The request body is not valid JSON: ${detail}`, { status: 400, code: 'invalid_json' }),
      );
    }
  };
  // The same parser under its usual media type too: fastify caches the parser it finds for a
  // content-type header, but never the catch-all, which it looks for again on every request.
  for (const contentType of ['application/json', '*']) {
    app.addContentTypeParser(contentType, { parseAs: 'string', bodyLimit }, (_request, body, done) =>
      parseBodyText(body, done),
    );
  }

  if (keys.enabled) {
    app.addHook('onRequest', async (request) => {
      if (OPEN_PATHS.has(request.url.split('?')[0])) return;
      keys.check(request.headers.authorization);
    });
  }

  app.setErrorHandler((error, request, reply) => {
    const apiError = toApiError(error);
    if (apiError.status >= 500) request.log.error({ err: error, url: request.url }, 'request failed');
    if (reply.sent || reply.raw.headersSent) return;
    void reply.code(apiError.status).send(apiError.body());
  });
  app.setNotFoundHandler((request, reply) => {
    const error = new ApiError(`Unknown request URL: ${request.method} ${request.url.split('?')[0]}.`, {
      status: 404,
      type: 'invalid_request_error',
      code: 'unknown_url',
    });
    void reply.code(404).send(error.body());
  });

  app.get('/live', async (_request, reply) => {
    if (shuttingDown)
      return reply.code(503).send({ message: 'Service is shutting down', status: 'shutting_down' });
    return { message: 'Service is live', status: 'live' };
  });

  app.get('/health', async (_request, reply) => {
    const models = options.registry.list().map((info) => {
      const health = options.registry.get(info.id)?.health() ?? { ready: false, instances: [] };
      return {
        model: info.id,
        ready: health.ready,
        instances: health.instances.map((i) => ({
          instance_id: i.workerId,
          role: i.role,
          data_parallel_size: i.dataParallelSize,
        })),
      };
    });
    const healthy = !shuttingDown && models.length > 0 && models.every((m) => m.ready);
    const body = {
      status: healthy ? 'healthy' : 'unhealthy',
      models,
      instances: models.flatMap((m) => m.instances.map((i) => ({ model: m.model, ...i }))),
    };
    return reply
      .code(healthy ? 200 : 503)
      .header('content-type', 'application/json; charset=utf-8')
      .send(stringifyLossless(body));
  });

  app.get('/metrics', async (_request, reply) => {
    options.beforeMetricsScrape?.();
    return reply.header('content-type', metrics.contentType()).send(await metrics.text());
  });

  app.get('/v1/models', async () => ({
    object: 'list',
    data: options.registry
      .list()
      .map((m) => ({ id: m.id, object: 'model', created: m.created, owned_by: m.ownedBy })),
  }));

  app.get<{ Params: { model: string } }>('/v1/models/*', async (request) => {
    const id = (request.params as Record<string, string>)['*'];
    const model = options.registry.list().find((m) => m.id === id);
    if (!model) throw modelNotFound(id);
    return { id: model.id, object: 'model', created: model.created, owned_by: model.ownedBy };
  });

  const generationRoute =
    <B extends { model: string; stream?: boolean | null }>(
      endpoint: Endpoint,
      validate: (body: unknown) => B,
      build: (
        body: B,
        backend: ModelBackend,
        tokenizer: Tokenizer,
        headers: RequestHeaders,
      ) => GenerationPlan,
    ) =>
    async (request: FastifyRequest, reply: FastifyReply) => {
      let label = 'unknown';
      let stream = false;
      let admitted = false;
      try {
        const body = validate(request.body);
        stream = body.stream ?? false;
        const backend = options.registry.get(body.model);
        if (!backend) throw modelNotFound(body.model);
        label = backend.model;
        if (shuttingDown) throw unavailable('The server is shutting down.', 'shutting_down');
        if (backend.busy?.())
          throw unavailable(`All workers serving '${label}' are busy; retry later.`, 'busy');
        if (options.maxInflight !== undefined && inflight >= options.maxInflight) {
          throw new ApiError('Too many requests in flight; retry later.', {
            status: 429,
            type: 'rate_limit_error',
            code: 'rate_limited',
          });
        }
        const found = tokenizerFor(backend);
        const tokenizer = found instanceof Promise ? await found : found;
        const generation = build(body, backend, tokenizer, request.headers);
        if (options.logPrompts) {
          request.log.info(
            { model: label, prompts: generation.prompts.map((p) => tokenizer.decode(p)) },
            'prompt',
          );
        }
        admitted = true;
        inflight++;
        // Resolves once the response has been sent in full, or the SSE stream has ended: the
        // handler returns nothing, so fastify has nothing left to send.
        await serveGeneration(generation, reply, { metrics, log: request.log });
      } catch (error) {
        if (!admitted) metrics.rejected(label, endpoint, stream, toApiError(error).status);
        throw error;
      } finally {
        if (admitted) inflight--;
      }
    };

  app.post(
    '/v1/chat/completions',
    generationRoute(
      'chat_completions',
      (body) => parseBody(chatCompletionSchema, body),
      (body, backend, tokenizer, headers) =>
        chatPlan(body, backend, tokenizer, { defaultMaxTokens }, headers),
    ),
  );
  app.post(
    '/v1/completions',
    generationRoute(
      'completions',
      (body) => parseBody(completionSchema, body),
      (body, backend, tokenizer, headers) => completionPlan(body, backend, tokenizer, headers),
    ),
  );

  registerBusyThreshold(app, options.registry);
  registerDashboard(app, options.dashboardData, metrics);
  return app;
}

function modelNotFound(model: string): ApiError {
  return new ApiError(`The model '${model}' does not exist.`, {
    status: 404,
    type: 'invalid_request_error',
    param: 'model',
    code: 'model_not_found',
  });
}

function unavailable(message: string, code: string): ApiError {
  return new ApiError(message, { status: 503, type: 'service_unavailable', code });
}

export interface ListenOptions {
  readonly host?: string;
  readonly port?: number;
}

/** Starts listening; resolves with the bound address (port 0 picks a free port). */
export async function listenFrontend(
  app: FastifyInstance,
  options: ListenOptions = {},
): Promise<{ url: string; port: number }> {
  const host = options.host ?? '0.0.0.0';
  await app.listen({ host, port: options.port ?? 8000 });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : (options.port ?? 8000);
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return { url: `http://${urlHost}:${port}`, port };
}
