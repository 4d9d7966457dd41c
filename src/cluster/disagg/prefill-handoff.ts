/**
 * Runs the prefill half of a disaggregated request on one prefill worker and rank, and hands back
 * what the decode needs as soon as the prefill engine opened its bootstrap room (its first chunk),
 * so the decode is dispatched while the prefill still computes (Dynamo's fast path; the decode's
 * pull waits until the room is ready).
 *
 * The prefill request is the original with `max_tokens` 1 and `dp_rank` = the chosen rank (absent
 * only when neither the router nor the request named one: the engine then picks and reports it).
 * The first chunk must name the worker and rank chosen; anything else is a DISAGG_RANK_MISMATCH,
 * never a silent fix-up.
 */

import type { WorkerId } from '../../kv/events.ts';
import type { BootstrapInfo, GenerateChunk, GenerateRequest } from '../../protocol/generate.ts';
import { decodeGenerateChunk, encodeGenerateRequest } from '../../protocol/wire.ts';
import { errorMessage } from '../../runtime/errors.ts';
import type { ModelCard } from '../../runtime/model-card.ts';
import { PushQueue, pushCallValue } from '../../runtime/push.ts';
import type { EndpointId, Runtime } from '../../runtime/types.ts';
import type { Cancellation } from '../../util/cancel.ts';
import { DisaggError } from './errors.ts';

export interface PrefillTarget {
  readonly workerId: WorkerId;
  /** undefined: the engine chooses (legacy router answer and no request-level rank). */
  readonly dpRank: number | undefined;
  readonly card: ModelCard;
}

export interface PrefillHandoff {
  /** What the decode pulls from: the prefill worker, the rank the prefill runs on, the room. */
  readonly bootstrap: BootstrapInfo;
  /** Resolves when the prefill finished (the KV waits in the room); rejects with a DisaggError. */
  readonly finished: Promise<void>;
  /** Stops the prefill call (no-op once it finished). */
  cancel(): void;
}

export interface StartPrefillOptions {
  readonly runtime: Runtime;
  /** The prefill component's generate endpoint. */
  readonly endpoint: EndpointId;
  readonly target: PrefillTarget;
  readonly request: GenerateRequest;
  readonly signal?: Cancellation;
}

function hex(id: WorkerId): string {
  return id.toString(16);
}

function where(target: PrefillTarget): string {
  return `prefill worker ${hex(target.workerId)} rank ${target.dpRank ?? '(engine-chosen)'}`;
}

function prefillFailed(target: PrefillTarget, detail: string, cause?: unknown): DisaggError {
  return new DisaggError(
    'DISAGG_PREFILL_FAILED',
    `prefill on ${where(target)} failed: ${detail}`,
    503,
    cause === undefined ? undefined : { cause },
  );
}

function decodeChunk(frame: Uint8Array, target: PrefillTarget): GenerateChunk {
  let result: ReturnType<typeof decodeGenerateChunk>;
  try {
    result = decodeGenerateChunk(frame);
  } catch (error) {
    result = { ok: false, error: errorMessage(error) };
  }
  if (!result.ok) throw prefillFailed(target, `malformed chunk: ${result.error}`);
  return result.value;
}

/** Starts the prefill; resolves once its bootstrap room is open (or rejects with a DisaggError). */
export async function startPrefill(options: StartPrefillOptions): Promise<PrefillHandoff> {
  const { runtime, endpoint, target, request, signal } = options;
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal?.reason);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  const prefillRequest: GenerateRequest = {
    requestId: request.requestId,
    tokenIds: request.tokenIds,
    sampling: { ...request.sampling, maxTokens: 1 },
    ...(target.dpRank !== undefined ? { dpRank: target.dpRank } : {}),
  };
  // In process the worker gets the request itself (it checks and copies it), elsewhere its bytes.
  const frames = new PushQueue<Uint8Array>();
  const call = pushCallValue(
    runtime.requests,
    endpoint,
    target.workerId,
    prefillRequest,
    encodeGenerateRequest,
    frames,
    { signal: controller.signal },
  );
  frames.onReturn = () => call.cancel();
  const release = () => signal?.removeEventListener('abort', onAbort);
  const stop = () => {
    release();
    void frames.return();
  };

  let first: GenerateChunk;
  try {
    const next = await frames.next();
    if (next.done) throw prefillFailed(target, 'the stream ended before the bootstrap room was opened');
    first = decodeChunk(next.value, target);
  } catch (error) {
    stop();
    if (error instanceof DisaggError) throw error;
    throw prefillFailed(target, errorMessage(error), error);
  }
  const opened = first.bootstrap;
  if (opened === undefined) {
    stop();
    throw prefillFailed(target, 'its first chunk carries no bootstrap info (not a prefill engine?)');
  }
  if (
    opened.prefillWorkerId !== target.workerId ||
    (target.dpRank !== undefined && opened.prefillDpRank !== target.dpRank)
  ) {
    stop();
    throw new DisaggError(
      'DISAGG_RANK_MISMATCH',
      `the router chose ${where(target)}, but the prefill opened room ${opened.room} on worker ${hex(opened.prefillWorkerId)} rank ${opened.prefillDpRank}`,
      502,
    );
  }
  const bootstrap: BootstrapInfo = {
    host: target.card.bootstrap?.host ?? opened.host,
    port: target.card.bootstrap?.port ?? opened.port,
    room: opened.room,
    prefillWorkerId: target.workerId,
    prefillDpRank: opened.prefillDpRank,
  };

  let done = first.finishReason !== undefined ? outcome(first, target) : undefined;
  const finished = (async () => {
    try {
      if (done !== undefined) return done;
      for (;;) {
        const next = await frames.next();
        if (next.done) throw prefillFailed(target, 'the stream ended before the prefill finished');
        const chunk = decodeChunk(next.value, target);
        if (chunk.finishReason !== undefined) {
          done = outcome(chunk, target);
          return done;
        }
      }
    } catch (error) {
      if (error instanceof DisaggError) throw error;
      throw prefillFailed(target, errorMessage(error), error);
    } finally {
      release();
    }
  })().then((result) => {
    if (result !== null) throw result;
  });
  finished.catch(() => undefined); // the caller may never look (the decode finished first)
  return {
    bootstrap,
    finished,
    cancel: () => {
      if (done === undefined) {
        controller.abort();
        stop();
      }
    },
  };
}

/** null for a prefill that finished normally, else its error. */
function outcome(chunk: GenerateChunk, target: PrefillTarget): DisaggError | null {
  if (chunk.finishReason === 'length' || chunk.finishReason === 'stop') return null;
  return prefillFailed(target, chunk.error ?? `finished with reason ${chunk.finishReason}`);
}
