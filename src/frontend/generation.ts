/**
 * Runs one choice of a request against a model backend and turns its token stream into text
 * deltas: incremental detokenization, stop strings (matched across chunks, cut off, and the
 * backend cancelled at once), the routing echo from the first chunk, latency metrics, and usage.
 * Several choices (`n > 1`, or several prompts) are merged in arrival order by `mergeChoices`.
 */
import type { Usage } from '../protocol/generate.ts';
import { IncrementalDetokenizer, StopStringMatcher } from '../tokens/detokenizer.ts';
import type { Tokenizer } from '../tokens/tokenizer.ts';
import type { BackendRequest, ModelBackend } from './backend.ts';
import { ApiError } from './errors.ts';
import type { RequestTimer } from './metrics.ts';
import { type NvextResponse, nvextFromChunk } from './nvext.ts';

export type FinishReasonOut = 'stop' | 'length';

/** Abort reason once a choice is over (made once; see serving.ts). */
const CHOICE_ENDED = new Error('the choice has ended');

export interface ChoiceDelta {
  /** Which choice this delta belongs to. */
  readonly index: number;
  /** New text (possibly empty). */
  readonly text: string;
  /** The routing decision, on the first delta of the choice when the backend reported one. */
  readonly nvext?: NvextResponse;
  /** Set on the last delta of the choice. */
  readonly finishReason?: FinishReasonOut;
  /** Set on the last delta of the choice. */
  readonly usage?: Usage;
}

export interface ChoiceRun {
  readonly index: number;
  readonly backend: ModelBackend;
  readonly request: BackendRequest;
  readonly tokenizer: Tokenizer;
  readonly stopStrings: readonly string[];
  readonly signal: AbortSignal;
  readonly timer: RequestTimer;
}

export async function* runChoice(run: ChoiceRun): AsyncGenerator<ChoiceDelta> {
  const { index, backend, request, signal, timer } = run;
  const controller = new AbortController();
  const forward = () => controller.abort(signal.reason);
  if (signal.aborted) forward();
  else signal.addEventListener('abort', forward, { once: true });
  const detokenizer = new IncrementalDetokenizer(run.tokenizer);
  const matcher = new StopStringMatcher(run.stopStrings);
  let completionTokens = 0;
  let lastUsage: Usage | undefined;
  let first = true;
  const usageFor = (): Usage => ({
    promptTokens: lastUsage?.promptTokens ?? request.tokenIds.length,
    completionTokens: lastUsage?.completionTokens ?? completionTokens,
    cachedTokens: lastUsage?.cachedTokens ?? 0,
  });
  try {
    for await (const chunk of backend.generate(request, controller.signal)) {
      if (chunk.tokenIds.length > 0) timer.tokens(chunk.tokenIds.length);
      if (chunk.routingSeconds !== undefined) timer.routing(chunk.routingSeconds);
      if (chunk.usage) lastUsage = chunk.usage;
      if (chunk.finishReason === 'error' || chunk.finishReason === 'cancelled') {
        throw new ApiError(
          chunk.error ??
            (chunk.finishReason === 'cancelled'
              ? 'The request was cancelled by the backend.'
              : 'The backend failed.'),
          { status: 500, type: 'server_error', code: `backend_${chunk.finishReason}` },
        );
      }
      const nvext = first ? nvextFromChunk(chunk) : undefined;
      first = false;
      completionTokens += chunk.tokenIds.length;
      const match = matcher.push(detokenizer.push(chunk.tokenIds));
      if (match.stopped) {
        yield { index, text: match.text, nvext, finishReason: 'stop', usage: usageFor() };
        return;
      }
      if (chunk.finishReason !== undefined) {
        const tail = matcher.push(detokenizer.flush());
        const text = match.text + tail.text + (tail.stopped ? '' : matcher.flush());
        const reason: FinishReasonOut = tail.stopped || chunk.finishReason === 'stop' ? 'stop' : 'length';
        yield { index, text, nvext, finishReason: reason, usage: usageFor() };
        return;
      }
      if (match.text !== '' || nvext !== undefined) yield { index, text: match.text, nvext };
    }
    if (!signal.aborted) {
      throw new ApiError('The backend ended the stream without a finish reason.', {
        status: 500,
        type: 'server_error',
        code: 'backend_incomplete',
      });
    }
  } finally {
    signal.removeEventListener('abort', forward);
    // Ended early (stop string, client gone, error) or not: the backend's work for it is over.
    controller.abort(CHOICE_ENDED);
  }
}

/** Interleaves several choice streams in arrival order; the first error rejects the merge. */
export async function* mergeChoices(
  streams: readonly AsyncGenerator<ChoiceDelta>[],
): AsyncGenerator<ChoiceDelta> {
  if (streams.length === 1) {
    yield* streams[0];
    return;
  }
  type Pending = Promise<{ stream: number; result: IteratorResult<ChoiceDelta> }>;
  const pending = new Map<number, Pending>();
  const pull = (stream: number): Pending => {
    const next = streams[stream].next().then((result) => ({ stream, result }));
    next.catch(() => {}); // observed by Promise.race; never an unhandled rejection meanwhile
    return next;
  };
  for (let i = 0; i < streams.length; i++) pending.set(i, pull(i));
  try {
    while (pending.size > 0) {
      const { stream, result } = await Promise.race(pending.values());
      if (result.done) {
        pending.delete(stream);
        continue;
      }
      pending.set(stream, pull(stream));
      yield result.value;
    }
  } finally {
    // Close every stream still open (client gone, or another choice failed). Not awaited: a
    // stream's return() waits for its pending next(), which ends when the caller aborts.
    void Promise.allSettled([...pending.keys()].map((i) => streams[i].return(undefined)));
  }
}
