/**
 * The token-level generate protocol spoken between frontend, router, worker and engine. Everything
 * is in token ids (the frontend tokenizes). A `dpRank` of 0 is a real rank: test with `=== undefined`,
 * never with truthiness.
 */
import type { WorkerId } from '../kv/events.ts';

export type WorkerRole = 'aggregated' | 'prefill' | 'decode';

export interface SamplingOptions {
  /** Maximum new tokens (>= 1). */
  readonly maxTokens: number;
  /** Generate exactly maxTokens, ignoring end-of-sequence. */
  readonly ignoreEos?: boolean;
  /** Finish (reason 'stop') when one of these token ids is generated. */
  readonly stopTokenIds?: readonly number[];
  readonly temperature?: number;
  /** Seed for deterministic output tokens. */
  readonly seed?: number;
  /**
   * How the output may be delivered (vLLM's `output_kind`). 'delta' (the default): every step's new
   * tokens as they come. 'final': the caller reads the output only once the request ends (a response
   * that is not streamed), so the engine may send the first token at once (time to first token, the
   * router's prefill-done signal) and the rest in one chunk with the finish reason (a chunk of
   * FINAL_CHUNK_MAX_TOKENS goes early). A hint: an engine may still send deltas. The inter-token
   * latency of such a request is the mean over the held tokens (the histogram's sum and count stay
   * exact; its spread within one response is not seen).
   */
  readonly outputKind?: OutputKind;
}

export type OutputKind = 'delta' | 'final';

export function isOutputKind(value: unknown): value is OutputKind {
  return value === 'delta' || value === 'final';
}

/** Where a decode engine pulls the KV state of a prefilled prompt from (DESIGN §8). */
export interface BootstrapInfo {
  readonly host: string;
  readonly port: number;
  /** Random room id, a safe integer in [0, 2^53). */
  readonly room: number;
  readonly prefillWorkerId: WorkerId;
  /** The rank the prefill ran on; the decode pulls from exactly this rank. */
  readonly prefillDpRank: number;
}

export interface GenerateRequest {
  readonly requestId: string;
  readonly tokenIds: readonly number[];
  readonly sampling: SamplingOptions;
  /** data_parallel_rank: run on exactly this rank; absent = the engine chooses. */
  readonly dpRank?: number;
  /** Decode side of disaggregation: pull the prompt's KV from here instead of prefilling. */
  readonly bootstrap?: BootstrapInfo;
}

export type FinishReason = 'stop' | 'length' | 'cancelled' | 'error';

export interface Usage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Prompt tokens served from the prefix cache. */
  readonly cachedTokens: number;
}

export interface GenerateChunk {
  /** Tokens generated since the previous chunk. */
  readonly tokenIds: readonly number[];
  /** Set on the last chunk. */
  readonly finishReason?: FinishReason;
  /** Set on the last chunk. */
  readonly usage?: Usage;
  /** The rank the engine ran the request on (set on the first chunk). */
  readonly dpRank?: number;
  /** Prefill side of disaggregation: where the KV waits for the decode (set on the first chunk). */
  readonly bootstrap?: BootstrapInfo;
  /** Error text when finishReason is 'error'. */
  readonly error?: string;
}
