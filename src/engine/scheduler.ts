/**
 * The continuous-batching scheduler of one data-parallel rank (Dynamo mocker / vLLM v1 style).
 *
 * One iteration, driven by clock timers (never by awaiting promises per token):
 * 1. begin: every running request takes one token of the batched-token budget; partially
 *    prefilled requests continue; then waiting requests are admitted FIFO while the sequence,
 *    block (with watermark) and token budgets hold. Admission takes all of the request's blocks at
 *    once (prefix-cache hits are shared); chunked prefill computes what the budget allows.
 *    The iteration lasts prefill(new tokens) + decode(batch) of the perf model, divided by the
 *    speed-up ratio (0 = no delay).
 * 2. end (a timer later): each request of the decode batch emits one token; a token that needs a
 *    new block when none is free is undone and the oldest running request is preempted (its
 *    blocks freed, requeued at the front of the queue; it recomputes its tokens and still
 *    completes). Finished requests leave; the next iteration starts at once if there is work.
 */
import type { BlockHasher } from '../tokens/block-hash.ts';
import type { Clock, TimerHandle } from '../util/clock.ts';
import { truncate } from '../util/run-all.ts';
import type { KvManager } from './kv-manager.ts';
import type { PerfModel } from './perf-model.ts';
import { outputToken } from './prng.ts';
import type { EngineSequence } from './sequence.ts';

export interface SchedulerConfig {
  readonly dpRank: number;
  readonly blockSize: number;
  readonly numGpuBlocks: number;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly enableChunkedPrefill: boolean;
  readonly watermark: number;
  readonly speedupRatio: number;
  readonly clock: Clock;
  readonly perfModel: PerfModel;
  /** Null when prefix caching is off (blocks are then never hashed). */
  readonly hasher: BlockHasher | null;
}

export interface SchedulerHooks {
  /** The request left the scheduler (its blocks are still held: call releaseBlocks or keep them). */
  finished(seq: EngineSequence, reason: 'stop' | 'length'): void;
  /** The request's sink threw from onToken: the engine ends the request (the rank keeps running). */
  sinkFailed(seq: EngineSequence, error: unknown): void;
}

export interface SchedulerMetrics {
  readonly dpRank: number;
  /** Requests holding a batch slot (prefilling or decoding). */
  readonly running: number;
  readonly waiting: number;
  readonly activeBlocks: number;
  readonly inactiveBlocks: number;
  readonly totalBlocks: number;
  /** Active blocks / total blocks. */
  readonly usage: number;
  /** Running mean, over the last 1000 admissions, of the share of prompt tokens found cached. */
  readonly prefixHitRate: number;
  /** Prompt tokens still to prefill (waiting and partially prefilled requests). */
  readonly pendingPrefillTokens: number;
  readonly preemptions: number;
  readonly evictedBlocks: number;
  readonly iterations: number;
  /** Simulated GPU milliseconds spent so far (before the speed-up ratio). */
  readonly busyMs: number;
}

const HIT_RATE_WINDOW = 1000;

/** A FIFO queue with cheap push/shift at both ends. */
class Deque<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  pushBack(item: T): void {
    this.items.push(item);
  }

  pushFront(item: T): void {
    if (this.head > 0) this.items[--this.head] = item;
    else this.items.unshift(item);
  }

  peek(): T | undefined {
    return this.items[this.head];
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  remove(item: T): boolean {
    const i = this.items.indexOf(item, this.head);
    if (i < 0) return false;
    this.items.splice(i, 1);
    return true;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = this.head; i < this.items.length; i++) yield this.items[i] as T;
  }
}

export class RankScheduler {
  readonly dpRank: number;
  readonly kv: KvManager;
  private readonly config: SchedulerConfig;
  private readonly hooks: SchedulerHooks;
  private readonly clock: Clock;
  private readonly waiting = new Deque<EngineSequence>();
  /** Admitted, prompt partly computed (chunked prefill), in admission order. */
  private prefilling: EngineSequence[] = [];
  /** Decoding, in admission order (index 0 = oldest = first preempted). */
  private running: EngineSequence[] = [];
  /**
   * The decode batch of the iteration in flight: its first `batchSize` slots (emptied slots are
   * null). Never truncated: `length = 0` drops an array's storage, which the next push allocates again.
   */
  private readonly batch: (EngineSequence | null)[] = [];
  private batchSize = 0;
  private timer: TimerHandle | null = null;
  private inIteration = false;
  /** Some request of `running` finished or was preempted during this iteration's end. */
  private runningChanged = false;
  private readonly maxAdmitBlocks: number;
  private readonly hashScratch = new Uint32Array(8);
  private readonly blockTokens: Uint32Array;
  private readonly hitRates = new Float64Array(HIT_RATE_WINDOW);
  private hitRateCount = 0;
  private hitRateSum = 0;
  private preemptionCount = 0;
  private iterationCount = 0;
  private busy = 0;

  constructor(config: SchedulerConfig, kv: KvManager, hooks: SchedulerHooks) {
    this.config = config;
    this.dpRank = config.dpRank;
    this.kv = kv;
    this.hooks = hooks;
    this.clock = config.clock;
    this.maxAdmitBlocks = (1 - config.watermark) * config.numGpuBlocks;
    this.blockTokens = new Uint32Array(config.blockSize);
  }

  /** Requests on this rank (waiting, prefilling or decoding): the balancing load. */
  get load(): number {
    return this.waiting.length + this.prefilling.length + this.running.length;
  }

  get idle(): boolean {
    return this.load === 0 && !this.inIteration;
  }

  enqueue(seq: EngineSequence): void {
    seq.state = 'waiting';
    seq.dpRank = this.dpRank;
    this.waiting.pushBack(seq);
    this.kick();
  }

  /** Removes a request wherever it is and frees its blocks at once. Returns false if it is not here. */
  remove(seq: EngineSequence): boolean {
    let found = false;
    if (seq.state === 'waiting') found = this.waiting.remove(seq);
    else if (seq.state === 'prefilling') found = removeFrom(this.prefilling, seq);
    else if (seq.state === 'running') found = removeFrom(this.running, seq);
    if (!found) return false;
    this.releaseBlocks(seq);
    seq.state = 'done';
    this.kick();
    return true;
  }

  releaseBlocks(seq: EngineSequence): void {
    if (seq.blocks.length > 0) this.kv.release(seq.blocks);
    seq.blocks = [];
  }

  /** Blocks were freed outside the scheduler (e.g. a bootstrap room): waiting requests may fit now. */
  notifyCapacity(): void {
    this.kick();
  }

  /** Stops the iteration loop (pending timers are cancelled). */
  stop(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  *requests(): IterableIterator<EngineSequence> {
    yield* this.running;
    yield* this.prefilling;
    yield* this.waiting;
  }

  metrics(): SchedulerMetrics {
    let pending = 0;
    for (const seq of this.prefilling) pending += seq.length - seq.computed;
    for (const seq of this.waiting) pending += seq.length;
    const kv = this.kv;
    return {
      dpRank: this.dpRank,
      running: this.prefilling.length + this.running.length,
      waiting: this.waiting.length,
      activeBlocks: kv.activeBlocks,
      inactiveBlocks: kv.inactiveBlocks,
      totalBlocks: kv.capacity,
      usage: kv.activeBlocks / kv.capacity,
      prefixHitRate:
        this.hitRateCount === 0 ? 0 : this.hitRateSum / Math.min(this.hitRateCount, HIT_RATE_WINDOW),
      pendingPrefillTokens: pending,
      preemptions: this.preemptionCount,
      evictedBlocks: kv.evictedBlocks,
      iterations: this.iterationCount,
      busyMs: this.busy,
    };
  }

  private kick(): void {
    if (this.inIteration || this.timer !== null) return;
    if (this.waiting.length === 0 && this.prefilling.length === 0 && this.running.length === 0) return;
    this.timer = this.clock.setTimer(this.beginIteration, 0);
  }

  private readonly beginIteration = (): void => {
    this.timer = null;
    const { blockSize, perfModel } = this.config;
    const running = this.running;
    for (let i = 0; i < running.length; i++) this.addToBatch(running[i]);
    let budget = this.config.maxNumBatchedTokens - this.batchSize;
    let prefillTokens = 0;

    // Continue chunked prefills first, oldest first.
    let kept = 0;
    for (const seq of this.prefilling) {
      if (budget > 0) {
        const chunk = Math.min(seq.length - seq.computed, budget);
        seq.computed += chunk;
        budget -= chunk;
        prefillTokens += chunk;
      }
      if (seq.computed === seq.length) this.startDecode(seq);
      else this.prefilling[kept++] = seq;
    }
    truncate(this.prefilling, kept);

    // Admit waiting requests FIFO while every budget holds.
    while (budget > 0 && this.waiting.length > 0) {
      const seq = this.waiting.peek()!;
      if (this.prefilling.length + this.running.length >= this.config.maxNumSeqs) break;
      const length = seq.length;
      const blocksNeeded = Math.ceil(length / blockSize);
      const rankEmpty = this.prefilling.length === 0 && this.running.length === 0;
      if (
        this.kv.activeBlocks + blocksNeeded > this.maxAdmitBlocks &&
        !(rankEmpty && this.kv.canAllocate(blocksNeeded))
      )
        break;
      const fullBlocks = Math.floor(length / blockSize);
      if (!this.config.enableChunkedPrefill && (this.batchSize > 0 || prefillTokens > 0)) {
        // Without chunking a prompt runs whole: it waits for an iteration with room for it.
        const hit = this.kv.cachedPrefixBlocks(seq.hashes.seqHashes, fullBlocks);
        if (length - this.cachedTokensOf(seq, hit) > budget) break;
      }
      const cachedBlocks = this.kv.acquire(seq.hashes, 0, fullBlocks, length % blockSize !== 0, seq.blocks);
      if (cachedBlocks < 0) break;
      const cached = this.cachedTokensOf(seq, cachedBlocks);
      const newTokens = length - cached;
      this.waiting.shift();
      if (seq.cachedTokens < 0) seq.cachedTokens = seq.kvPulled ? 0 : cached;
      this.recordHitRate(length > 0 ? 1 - newTokens / length : 0);
      seq.computed = cached;
      const chunk = this.config.enableChunkedPrefill ? Math.min(newTokens, budget) : newTokens;
      seq.computed += chunk;
      budget -= chunk;
      prefillTokens += chunk;
      if (seq.computed === length) this.startDecode(seq);
      else {
        seq.state = 'prefilling';
        this.prefilling.push(seq);
      }
    }

    const batchSize = this.batchSize;
    if (batchSize === 0 && prefillTokens === 0) return; // nothing can run: wait for a kick
    const batch = this.batch;
    let activeKvTokens = 0;
    for (let i = 0; i < batchSize; i++) activeKvTokens += (batch[i] as EngineSequence).length;
    const gpuMs =
      perfModel.prefillMs(prefillTokens) +
      perfModel.decodeMs(activeKvTokens, this.config.numGpuBlocks * blockSize, batchSize);
    this.busy += gpuMs;
    this.iterationCount++;
    this.inIteration = true;
    const ratio = this.config.speedupRatio;
    this.timer = this.clock.setTimer(this.endIteration, ratio > 0 ? gpuMs / ratio : 0);
  };

  /** Tokens not to compute: the cached prefix (at least one token is always computed, as vLLM), or all when the KV was pulled. */
  private cachedTokensOf(seq: EngineSequence, cachedBlocks: number): number {
    const length = seq.length;
    return seq.kvPulled ? length : Math.min(cachedBlocks * this.config.blockSize, length - 1);
  }

  private addToBatch(seq: EngineSequence): void {
    this.batch[this.batchSize++] = seq;
  }

  private startDecode(seq: EngineSequence): void {
    seq.state = 'running';
    this.running.push(seq);
    this.addToBatch(seq);
  }

  private readonly endIteration = (): void => {
    this.timer = null;
    const batch = this.batch;
    const batchSize = this.batchSize;
    this.batchSize = 0;
    for (let i = 0; i < batchSize; i++) {
      const seq = batch[i] as EngineSequence;
      batch[i] = null;
      if (seq.state === 'running') this.decodeOne(seq);
    }
    if (this.runningChanged) {
      // Drop finished and preempted requests, keeping admission order.
      let kept = 0;
      for (const seq of this.running) if (seq.state === 'running') this.running[kept++] = seq;
      truncate(this.running, kept);
      this.runningChanged = false;
    }
    this.inIteration = false;
    if (this.waiting.length > 0 || this.prefilling.length > 0 || this.running.length > 0)
      this.beginIteration();
  };

  /** Emits one token of `seq`, or preempts the oldest running request when no block is free for it. */
  private decodeOne(seq: EngineSequence): void {
    const { blockSize } = this.config;
    const length = seq.length;
    if (length % blockSize === 0) {
      // The token opens a new block.
      const partial = this.kv.allocatePartial();
      if (partial === null) {
        this.preemptOldest();
        return;
      }
      seq.blocks.push(partial);
    }
    const index = seq.generated;
    const token = outputToken(seq.seed, index);
    seq.output.push(token);
    seq.generated = index + 1;
    seq.computed = length + 1;
    if ((length + 1) % blockSize === 0) this.promoteLastBlock(seq);
    if (index === 0) seq.firstTokenAt = this.clock.now();
    let reason: 'stop' | 'length' | null = null;
    if (seq.isStopToken(token)) reason = 'stop';
    else if (seq.generated >= seq.maxTokens) reason = 'length';
    try {
      seq.sink.onToken(token, reason !== null);
    } catch (error) {
      this.hooks.sinkFailed(seq, error);
      return;
    }
    if (seq.state !== 'running') return; // cancelled from inside onToken
    if (reason !== null) {
      seq.state = 'done';
      seq.finishedAt = this.clock.now();
      this.runningChanged = true;
      this.hooks.finished(seq, reason);
    }
  }

  private promoteLastBlock(seq: EngineSequence): void {
    const hasher = this.config.hasher;
    if (hasher === null) return;
    const index = seq.length / this.config.blockSize - 1;
    if (seq.hashes.seqHashes.length === index)
      seq.extendHashes(hasher, index, this.hashScratch, this.blockTokens);
    const seqHash = seq.hashes.seqHashes[index];
    const parent = index > 0 ? seq.hashes.seqHashes[index - 1] : null;
    seq.blocks[index] = this.kv.promote(seq.blocks[index], seqHash, seq.hashes.localHashes[index], parent);
  }

  private preemptOldest(): void {
    let victim: EngineSequence | undefined;
    for (const seq of this.running)
      if (seq.state === 'running') {
        victim = seq;
        break;
      }
    if (victim === undefined) return;
    this.releaseBlocks(victim);
    victim.computed = 0;
    victim.preemptions++;
    victim.state = 'waiting';
    this.waiting.pushFront(victim);
    this.preemptionCount++;
    this.runningChanged = true;
  }

  private recordHitRate(rate: number): void {
    const slot = this.hitRateCount % HIT_RATE_WINDOW;
    if (this.hitRateCount >= HIT_RATE_WINDOW) this.hitRateSum -= this.hitRates[slot];
    this.hitRates[slot] = rate;
    this.hitRateSum += rate;
    this.hitRateCount++;
  }
}

function removeFrom<T>(list: T[], item: T): boolean {
  const i = list.indexOf(item);
  if (i < 0) return false;
  list.splice(i, 1);
  return true;
}
