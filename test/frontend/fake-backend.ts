/**
 * Test double for a model backend: generates a deterministic token stream (the tokens of a fixed
 * reply, repeated to max tokens), reports a routing decision, and records what reached it.
 */
import type {
  BackendChunk,
  BackendHealth,
  BackendRequest,
  BusyThresholdControl,
  ModelBackend,
  RoutingDecision,
} from '../../src/frontend/backend.ts';
import { BackendError } from '../../src/frontend/backend.ts';
import { BusyThresholdState } from '../../src/frontend/cluster-backend.ts';
import type { Tokenizer } from '../../src/tokens/tokenizer.ts';
import type { Cancellation } from '../../src/util/cancel.ts';

export interface FakeBackendOptions {
  readonly model?: string;
  readonly tokenizer: Tokenizer;
  /** Text whose tokens are generated (repeated as needed). */
  readonly reply?: string;
  /** Explicit token ids to generate instead of `reply`. */
  readonly replyTokens?: readonly number[];
  readonly workerId?: bigint;
  readonly dataParallelSize?: number;
  /** Wait this long between tokens (ms). */
  readonly delayMs?: number;
  /** Tokens per chunk (default 1). */
  readonly chunkSize?: number;
  /** Throw this after emitting so many tokens. */
  readonly failAfterTokens?: number;
  /** Prompt tokens reported as cached. */
  readonly cachedTokens?: number;
  readonly contextLength?: number;
  readonly disaggregated?: { prefillWorkerId: bigint };
  busy?: boolean;
}

export class FakeBackend implements ModelBackend {
  readonly model: string;
  readonly contextLength?: number;
  readonly requests: BackendRequest[] = [];
  readonly signals: Cancellation[] = [];
  routeCalls = 0;
  generateCalls = 0;
  readonly busyThresholds: BusyThresholdControl = new BusyThresholdState({
    activeDecodeBlocksThreshold: 0.85,
  });
  private readonly tokens: readonly number[];

  constructor(private readonly options: FakeBackendOptions) {
    this.model = options.model ?? 'fake-model';
    this.contextLength = options.contextLength;
    this.tokens =
      options.replyTokens ?? options.tokenizer.encode(options.reply ?? 'Hello from the fake backend.');
  }

  private decide(request: BackendRequest): RoutingDecision {
    const dpSize = this.options.dataParallelSize ?? 4;
    const rank = request.routing.dpRank ?? 1;
    if (rank >= dpSize) {
      throw new BackendError(`dp_rank ${rank} is out of range for worker (data_parallel_size ${dpSize})`, {
        status: 400,
        type: 'invalid_request_error',
        param: 'dp_rank',
        code: 'invalid_dp_rank',
      });
    }
    const workerId =
      request.routing.backendInstanceId ?? request.routing.decodeWorkerId ?? this.options.workerId ?? 7n;
    const disagg = this.options.disaggregated;
    return {
      workerId,
      dpRank: rank,
      overlapBlocks: 3,
      ...(disagg
        ? {
            prefill: {
              workerId: request.routing.prefillWorkerId ?? disagg.prefillWorkerId,
              dpRank: request.routing.prefillDpRank ?? 0,
              overlapBlocks: 2,
            },
          }
        : {}),
    };
  }

  async route(request: BackendRequest): Promise<RoutingDecision> {
    this.routeCalls++;
    this.requests.push(request);
    return this.decide(request);
  }

  async *generate(request: BackendRequest, signal: Cancellation): AsyncIterable<BackendChunk> {
    this.generateCalls++;
    this.requests.push(request);
    this.signals.push(signal);
    const decision = this.decide(request);
    const chunkSize = this.options.chunkSize ?? 1;
    const stops = new Set(request.sampling.ignoreEos ? [] : (request.sampling.stopTokenIds ?? []));
    let produced = 0;
    let first = true;
    while (produced < request.sampling.maxTokens) {
      if (this.options.delayMs) await sleep(this.options.delayMs, signal);
      if (signal.aborted) return;
      if (this.options.failAfterTokens !== undefined && produced >= this.options.failAfterTokens) {
        throw new Error('worker died');
      }
      const ids: number[] = [];
      let stopped = false;
      while (ids.length < chunkSize && produced < request.sampling.maxTokens) {
        const id = this.tokens[produced % this.tokens.length];
        ids.push(id);
        produced++;
        if (stops.has(id)) {
          stopped = true;
          break;
        }
      }
      const last = stopped || produced >= request.sampling.maxTokens;
      const decisionFields: Partial<BackendChunk> = first
        ? {
            workerId: decision.workerId,
            dpRank: decision.dpRank,
            routingSeconds: 0.0001,
            ...(decision.prefill
              ? {
                  prefillWorkerId: decision.prefill.workerId,
                  prefillDpRank: decision.prefill.dpRank,
                  decodeWorkerId: decision.workerId,
                  decodeDpRank: decision.dpRank,
                }
              : {}),
          }
        : {};
      first = false;
      yield {
        tokenIds: ids,
        ...decisionFields,
        ...(last
          ? {
              finishReason: stopped ? 'stop' : 'length',
              usage: {
                promptTokens: request.tokenIds.length,
                completionTokens: produced,
                cachedTokens: this.options.cachedTokens ?? 0,
              },
            }
          : {}),
      };
      if (last) return;
    }
  }

  health(): BackendHealth {
    return {
      ready: true,
      instances: [
        {
          workerId: this.options.workerId ?? 7n,
          role: 'aggregated',
          dataParallelSize: this.options.dataParallelSize ?? 4,
        },
      ],
    };
  }

  busy(): boolean {
    return this.options.busy ?? false;
  }
}

function sleep(ms: number, signal: Cancellation): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
