/**
 * Runs one choice of a request against a model backend and turns its token stream into text
 * deltas: incremental detokenization, stop strings (matched across chunks, cut off, and the
 * backend cancelled at once), the routing echo from the first chunk, latency metrics, and usage.
 * Several choices (`n > 1`, or several prompts) are merged in arrival order by `mergeChoices`.
 */
import type { Usage } from '../protocol/generate.ts';
import { isPushSource, PUSH, type PushHandle, type PushSink, type PushSource } from '../runtime/push.ts';
import { decodeTokens, IncrementalDetokenizer, StopStringMatcher } from '../tokens/detokenizer.ts';
import type { Tokenizer } from '../tokens/tokenizer.ts';
import { type Cancellation, CancelSource } from '../util/cancel.ts';
import type { BackendChunk, BackendRequest, ModelBackend } from './backend.ts';
import { ApiError } from './errors.ts';
import type { RequestTimer } from './metrics.ts';
import { type NvextResponse, nvextFromChunk } from './nvext.ts';

export type FinishReasonOut = 'stop' | 'length';

/** Abort reason once a choice is over (made once; see serving.ts). */
export const CHOICE_ENDED = new Error('the choice has ended');

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

/** A whole choice, for a response that is not streamed. */
export interface ChoiceOutcome {
  readonly index: number;
  readonly text: string;
  readonly finishReason: FinishReasonOut;
  readonly usage: Usage;
  readonly nvext?: NvextResponse;
  /** The backend sent its final chunk (false when a stop string ended the choice first). */
  readonly backendDone: boolean;
}

export interface ChoiceRun {
  readonly index: number;
  readonly backend: ModelBackend;
  readonly request: BackendRequest;
  readonly tokenizer: Tokenizer;
  readonly stopStrings: readonly string[];
  /** Cancelling it stops the choice. */
  readonly signal: Cancellation;
  readonly timer: RequestTimer;
}

/**
 * The cancellation of one choice of a request: cancelled when the request's is, and by `end()`
 * once the choice is over, so a backend still running it stops at once.
 */
export class ChoiceCancel extends CancelSource {
  constructor(private readonly parent: Cancellation) {
    super();
    if (parent.aborted) this.abort(parent.reason);
    else parent.addEventListener('abort', this);
  }

  /** The request was cancelled (this object is the parent's listener). */
  handleEvent(): void {
    this.abort(this.parent.reason);
  }

  end(): void {
    this.parent.removeEventListener('abort', this);
    this.abort(CHOICE_ENDED);
  }
}

/** Per-chunk bookkeeping shared by the streamed and the collected paths. */
class ChunkAccount {
  completionTokens = 0;
  private lastUsage: Usage | undefined;
  private first = true;

  constructor(
    private readonly request: BackendRequest,
    private readonly timer: RequestTimer,
  ) {}

  /** Records the chunk's metrics; throws for a failed or cancelled backend; returns the routing echo on the first chunk. */
  take(chunk: BackendChunk): NvextResponse | undefined {
    const count = chunk.tokenIds.length;
    if (count > 0) this.timer.tokens(count);
    if (chunk.routingSeconds !== undefined) this.timer.routing(chunk.routingSeconds);
    if (chunk.usage) this.lastUsage = chunk.usage;
    if (chunk.finishReason === 'error' || chunk.finishReason === 'cancelled') {
      throw new ApiError(
        chunk.error ??
          (chunk.finishReason === 'cancelled'
            ? 'The request was cancelled by the backend.'
            : 'The backend failed.'),
        { status: 500, type: 'server_error', code: `backend_${chunk.finishReason}` },
      );
    }
    this.completionTokens += count;
    if (!this.first) return undefined;
    this.first = false;
    return nvextFromChunk(chunk);
  }

  usage(): Usage {
    const last = this.lastUsage;
    return {
      promptTokens: last?.promptTokens ?? this.request.tokenIds.length,
      completionTokens: last?.completionTokens ?? this.completionTokens,
      cachedTokens: last?.cachedTokens ?? 0,
    };
  }
}

function incomplete(): ApiError {
  return new ApiError('The backend ended the stream without a finish reason.', {
    status: 500,
    type: 'server_error',
    code: 'backend_incomplete',
  });
}

/**
 * The end of a choice with stop strings, once the backend finished: what the detokenizer and the
 * matcher still hold, and whether a stop string ends it there.
 */
function finishText(
  matcher: StopStringMatcher,
  detokenizer: IncrementalDetokenizer,
  finishReason: NonNullable<BackendChunk['finishReason']>,
): { text: string; reason: FinishReasonOut } {
  const tail = matcher.push(detokenizer.flush());
  const text = tail.text + (tail.stopped ? '' : matcher.flush());
  return { text, reason: tail.stopped || finishReason === 'stop' ? 'stop' : 'length' };
}

/** Streams one choice as text deltas; the backend's signal is aborted once the choice is over. */
export async function* runChoice(run: ChoiceRun): AsyncGenerator<ChoiceDelta> {
  const { index, backend, request } = run;
  const signal = new ChoiceCancel(run.signal);
  const account = new ChunkAccount(request, run.timer);
  const detokenizer = new IncrementalDetokenizer(run.tokenizer);
  const matcher = new StopStringMatcher(run.stopStrings);
  try {
    for await (const chunk of backend.generate(request, signal)) {
      const nvext = account.take(chunk);
      const match = matcher.push(detokenizer.push(chunk.tokenIds));
      if (match.stopped) {
        yield { index, text: match.text, nvext, finishReason: 'stop', usage: account.usage() };
        return;
      }
      if (chunk.finishReason !== undefined) {
        const end = finishText(matcher, detokenizer, chunk.finishReason);
        yield { index, text: match.text + end.text, nvext, finishReason: end.reason, usage: account.usage() };
        return;
      }
      if (match.text !== '' || nvext !== undefined) yield { index, text: match.text, nvext };
    }
    if (!signal.aborted) throw incomplete();
  } finally {
    signal.end();
  }
}

/**
 * Runs one choice to its end for a response that is not streamed: no delta per chunk, and
 * without stop strings the text is decoded once at the end. Resolves undefined when the signal
 * aborted before the choice finished. The backend gets `run.signal` itself: the caller aborts it
 * once the choice is over (the request's end, or a `ChoiceCancel` when there are several).
 *
 * A backend stream that is also a PushSource (the cluster backend's) hands its chunks over by
 * plain calls: one promise for the whole choice instead of one per chunk.
 */
export function collectChoice(run: ChoiceRun): Promise<ChoiceOutcome | undefined> {
  let stream: AsyncIterable<BackendChunk>;
  try {
    stream = run.backend.generate(run.request, run.signal);
  } catch (error) {
    return Promise.reject(error);
  }
  const collector = new ChoiceCollector(run);
  if (!isPushSource(stream)) return pullChoice(collector, stream, run.signal);
  return new Promise((resolve, reject) =>
    new PushedChoice(collector, run.signal, resolve, reject).start(stream),
  );
}

async function pullChoice(
  collector: ChoiceCollector,
  stream: AsyncIterable<BackendChunk>,
  signal: Cancellation,
): Promise<ChoiceOutcome | undefined> {
  for await (const chunk of stream) {
    const outcome = collector.take(chunk);
    if (outcome !== undefined) return outcome;
  }
  if (!signal.aborted) throw incomplete();
  return undefined;
}

/** One choice's chunks, taken in order until the choice is over. */
class ChoiceCollector {
  private readonly account: ChunkAccount;
  private readonly detokenizer: IncrementalDetokenizer | undefined;
  private readonly matcher: StopStringMatcher | undefined;
  private readonly ids: number[] = [];
  private text = '';
  private nvext: NvextResponse | undefined;

  constructor(private readonly run: ChoiceRun) {
    this.account = new ChunkAccount(run.request, run.timer);
    if (run.stopStrings.length > 0) {
      this.detokenizer = new IncrementalDetokenizer(run.tokenizer);
      this.matcher = new StopStringMatcher(run.stopStrings);
    }
  }

  /** The outcome once this chunk ends the choice, else undefined; throws for a failed backend. */
  take(chunk: BackendChunk): ChoiceOutcome | undefined {
    const echo = this.account.take(chunk);
    if (echo !== undefined) this.nvext = echo;
    const { detokenizer, matcher } = this;
    if (detokenizer === undefined || matcher === undefined) {
      for (const id of chunk.tokenIds) this.ids.push(id);
      if (chunk.finishReason === undefined) return undefined;
      const reason: FinishReasonOut = chunk.finishReason === 'stop' ? 'stop' : 'length';
      return this.outcome(decodeTokens(this.run.tokenizer, this.ids), reason, true);
    }
    const match = matcher.push(detokenizer.push(chunk.tokenIds));
    this.text += match.text;
    if (match.stopped) return this.outcome(this.text, 'stop', false);
    if (chunk.finishReason === undefined) return undefined;
    const end = finishText(matcher, detokenizer, chunk.finishReason);
    this.text += end.text;
    return this.outcome(this.text, end.reason, true);
  }

  private outcome(text: string, finishReason: FinishReasonOut, backendDone: boolean): ChoiceOutcome {
    const { index } = this.run;
    return { index, text, finishReason, usage: this.account.usage(), nvext: this.nvext, backendDone };
  }
}

/**
 * Collects a pushed stream; settles its promise once, and stops the stream if the choice ends first.
 * It also listens to the signal itself: once the request is cancelled the choice resolves undefined
 * and the stream is stopped, whether or not the backend ever ends a cancelled stream.
 */
class PushedChoice implements PushSink<BackendChunk> {
  private handle: PushHandle | undefined;
  /** Stop the stream as soon as its handle is known (the choice ended while it was starting). */
  private stopWanted = false;
  private settled = false;

  constructor(
    private readonly collector: ChoiceCollector,
    private readonly signal: Cancellation,
    private readonly resolve: (outcome: ChoiceOutcome | undefined) => void,
    private readonly reject: (error: unknown) => void,
  ) {}

  start(stream: PushSource<BackendChunk>): void {
    this.signal.addEventListener('abort', this);
    try {
      this.handle = stream[PUSH](this);
    } catch (error) {
      this.fail(error);
      return;
    }
    if (this.stopWanted) this.handle.cancel();
  }

  push(chunk: BackendChunk): void {
    if (this.settled) return;
    let outcome: ChoiceOutcome | undefined;
    try {
      outcome = this.collector.take(chunk);
    } catch (error) {
      this.settle();
      this.reject(error);
      this.stop();
      return;
    }
    if (outcome === undefined) return;
    this.settle();
    this.resolve(outcome);
    if (!outcome.backendDone) this.stop();
  }

  end(): void {
    if (this.settled) return;
    this.settle();
    if (this.signal.aborted) this.resolve(undefined);
    else this.reject(incomplete());
  }

  fail(error: unknown): void {
    if (this.settled) return;
    this.settle();
    this.reject(error);
  }

  /** The request was cancelled before the choice ended. */
  handleEvent(): void {
    if (this.settled) return;
    this.settle();
    this.resolve(undefined);
    this.stop();
  }

  private settle(): void {
    this.settled = true;
    this.signal.removeEventListener('abort', this);
  }

  private stop(): void {
    if (this.handle === undefined) this.stopWanted = true;
    else this.handle.cancel();
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
