/**
 * Prefill side of disaggregation: after prefilling, a request's KV blocks stay referenced under a
 * bootstrap room on the rank that computed them, until a decode engine claims the room (the KV is
 * "transferred" and the blocks are released into the rank's prefix cache) or a timeout frees them.
 */
import type { WorkerId } from '../kv/events.ts';
import type { Clock, TimerHandle } from '../util/clock.ts';
import { EngineError } from './errors.ts';
import type { EngineSequence } from './sequence.ts';
import type { PulledKv } from './transfer.ts';

interface Waiter {
  resolve(kv: PulledKv): void;
  reject(error: EngineError): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | null;
}

interface Room {
  readonly room: number;
  readonly dpRank: number;
  readonly seq: EngineSequence;
  ready: boolean;
  timer: TimerHandle | null;
  waiters: Waiter[];
}

export interface BootstrapRoomsOptions {
  readonly workerId: WorkerId;
  readonly clock: Clock;
  /** How long prefilled KV waits for its decode before it is freed. */
  readonly timeoutMs: number;
  /** Releases a room's blocks on its rank. */
  readonly release: (seq: EngineSequence) => void;
}

export class BootstrapRooms {
  private readonly rooms = new Map<number, Room>();
  private readonly options: BootstrapRoomsOptions;
  private expiredCount = 0;

  constructor(options: BootstrapRoomsOptions) {
    this.options = options;
  }

  get size(): number {
    return this.rooms.size;
  }

  /** Rooms freed by their timeout so far. */
  get expired(): number {
    return this.expiredCount;
  }

  has(room: number): boolean {
    return this.rooms.has(room);
  }

  /** Reserves a room for a prefill starting on `seq.dpRank`. */
  open(room: number, seq: EngineSequence): void {
    if (this.rooms.has(room))
      throw new EngineError('ENGINE_BOOTSTRAP_ROOM_CLAIMED', `room ${room} is in use`);
    this.rooms.set(room, { room, dpRank: seq.dpRank, seq, ready: false, timer: null, waiters: [] });
  }

  /** The prefill finished: its blocks now wait for a claim, or the timeout. */
  ready(room: number): void {
    const entry = this.rooms.get(room);
    if (entry === undefined) return;
    entry.ready = true;
    const waiters = entry.waiters;
    entry.waiters = [];
    if (waiters.length > 0) {
      this.take(entry, waiters.shift()!);
      for (const waiter of waiters) this.fail(waiter, this.claimedError(room));
      return;
    }
    entry.timer = this.options.clock.setTimer(() => {
      if (this.rooms.get(room) !== entry) return;
      this.rooms.delete(room);
      this.expiredCount++;
      this.options.release(entry.seq);
    }, this.options.timeoutMs);
  }

  /** The prefill failed or was cancelled: waiting decodes fail, nothing is held. */
  abandon(room: number, reason: string): void {
    const entry = this.rooms.get(room);
    if (entry === undefined) return;
    this.rooms.delete(room);
    entry.timer?.cancel();
    for (const waiter of entry.waiters)
      this.fail(
        waiter,
        new EngineError('ENGINE_BOOTSTRAP_ROOM_NOT_FOUND', `room ${room} was abandoned: ${reason}`),
      );
  }

  claim(room: number, dpRank: number, signal?: AbortSignal): Promise<PulledKv> {
    const entry = this.rooms.get(room);
    const worker = this.options.workerId;
    if (entry === undefined)
      return Promise.reject(
        new EngineError(
          'ENGINE_BOOTSTRAP_ROOM_NOT_FOUND',
          `bootstrap room ${room} not found on prefill worker ${worker} (never opened, already claimed or expired)`,
        ),
      );
    if (entry.dpRank !== dpRank)
      return Promise.reject(
        new EngineError(
          'ENGINE_BOOTSTRAP_WRONG_RANK',
          `bootstrap room ${room} is on rank ${entry.dpRank} of prefill worker ${worker}, not rank ${dpRank}`,
        ),
      );
    if (signal?.aborted)
      return Promise.reject(new EngineError('ENGINE_CANCELLED', `pull of room ${room} cancelled`));
    return new Promise<PulledKv>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, signal, onAbort: null };
      if (entry.ready) {
        this.take(entry, waiter);
        return;
      }
      if (entry.waiters.length > 0) {
        reject(this.claimedError(room));
        return;
      }
      if (signal !== undefined) {
        waiter.onAbort = () => {
          const i = entry.waiters.indexOf(waiter);
          if (i >= 0) entry.waiters.splice(i, 1);
          reject(new EngineError('ENGINE_CANCELLED', `pull of room ${room} cancelled`));
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      entry.waiters.push(waiter);
    });
  }

  /** Frees every room (engine shutdown). */
  close(): void {
    for (const room of [...this.rooms.keys()]) {
      const entry = this.rooms.get(room)!;
      this.abandon(room, 'engine closed');
      if (entry.ready) this.options.release(entry.seq);
    }
  }

  private take(entry: Room, waiter: Waiter): void {
    this.rooms.delete(entry.room);
    entry.timer?.cancel();
    const seq = entry.seq;
    const pulled: PulledKv = {
      blocks: seq.hashes.seqHashes.slice(0, Math.floor(seq.promptLength / seq.blockSize)),
      tokens: Array.from(seq.prompt),
    };
    this.options.release(seq);
    this.settle(waiter);
    waiter.resolve(pulled);
  }

  private fail(waiter: Waiter, error: EngineError): void {
    this.settle(waiter);
    waiter.reject(error);
  }

  private settle(waiter: Waiter): void {
    if (waiter.onAbort !== null) waiter.signal?.removeEventListener('abort', waiter.onAbort);
  }

  private claimedError(room: number): EngineError {
    return new EngineError('ENGINE_BOOTSTRAP_ROOM_CLAIMED', `bootstrap room ${room} is already claimed`);
  }
}
