import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ActiveSequences } from '../../src/routing/active-sequences.ts';
import { packU64s } from '../../src/tokens/u64.ts';
import { ManualClock } from '../../src/util/clock.ts';

const hashes = (...values: bigint[]) => packU64s(values);
// Hashes above 2^53 whose low halves collide: only the full 64 bits tell them apart.
const H1 = 0xdead_beef_0000_0001n;
const H2 = 0xfeed_f00d_0000_0001n;
const H3 = 0x0123_4567_89ab_cdefn;
const H4 = 0xffff_ffff_ffff_ffffn;

function loadsOf(seqs: ActiveSequences, owner: number) {
  return {
    blocks: seqs.activeBlocks(owner),
    prefill: seqs.activePrefillTokens(owner),
    requests: seqs.activeRequests(owner),
  };
}

describe('ActiveSequences', () => {
  it('counts shared blocks once, subtracts prefill once, and returns to zero after free', () => {
    const seqs = new ActiveSequences({ clock: new ManualClock() });
    expect(seqs.add('a', 0, { prefillTokens: 40, blocks: hashes(H1, H2, H3) })).toBe(true);
    expect(seqs.add('b', 0, { prefillTokens: 10, blocks: hashes(H1, H2, H4) })).toBe(true);
    expect(loadsOf(seqs, 0)).toEqual({ blocks: 4, prefill: 50, requests: 2 });

    expect(seqs.markPrefillCompleted('a')).toBe(true);
    expect(seqs.markPrefillCompleted('a')).toBe(true); // idempotent: subtracts once
    expect(loadsOf(seqs, 0)).toEqual({ blocks: 4, prefill: 10, requests: 2 });

    expect(seqs.free('a')).toBe(true);
    expect(loadsOf(seqs, 0)).toEqual({ blocks: 3, prefill: 10, requests: 1 });
    expect(seqs.free('a')).toBe(false); // double free is harmless
    expect(seqs.free('b')).toBe(true);
    expect(loadsOf(seqs, 0)).toEqual({ blocks: 0, prefill: 0, requests: 0 });
    expect(seqs.markPrefillCompleted('b')).toBe(false);
  });

  it('ignores a duplicate request id', () => {
    const seqs = new ActiveSequences({ clock: new ManualClock() });
    seqs.add('a', 1, { prefillTokens: 5, blocks: hashes(H1) });
    expect(seqs.add('a', 2, { prefillTokens: 7, blocks: hashes(H2) })).toBe(false);
    expect(seqs.ownerOf('a')).toBe(1);
    expect(loadsOf(seqs, 2)).toEqual({ blocks: 0, prefill: 0, requests: 0 });
  });

  it('keeps owners apart: the same block on two owners counts on each', () => {
    const seqs = new ActiveSequences({ clock: new ManualClock() });
    seqs.add('a', 0, { prefillTokens: 0, blocks: hashes(H1, H2) });
    seqs.add('b', 3, { prefillTokens: 0, blocks: hashes(H1) });
    expect(seqs.activeBlocks(0)).toBe(2);
    expect(seqs.activeBlocks(3)).toBe(1);
    seqs.free('a');
    expect(seqs.activeBlocks(0)).toBe(0);
    expect(seqs.activeBlocks(3)).toBe(1);
  });

  it('potential decode blocks = blocks not active there + active blocks, per owner', () => {
    const seqs = new ActiveSequences({ clock: new ManualClock() });
    seqs.add('a', 0, { prefillTokens: 0, blocks: hashes(H1, H2, H3) });
    seqs.add('b', 1, { prefillTokens: 0, unsharedBlocks: 2 });
    const owners = Int32Array.of(0, 1, 2);
    const out = new Float64Array(3);
    seqs.potentialDecodeBlocks(hashes(H1, H2, H4), 3, 0, owners, 3, out);
    expect([...out]).toEqual([1 + 3, 3 + 2, 3 + 0]);
    // The scratch is reset: a second query gives the same answer.
    seqs.potentialDecodeBlocks(hashes(H1, H2, H4), 3, 0, owners, 3, out);
    expect([...out]).toEqual([4, 5, 3]);
    // No hashes (no KV reuse assumed): every block is new.
    seqs.potentialDecodeBlocks(null, 3, 3, owners, 3, out);
    expect([...out]).toEqual([3 + 3, 3 + 2, 3]);
  });

  it('expires requests older than the stale limit', () => {
    const clock = new ManualClock();
    const seqs = new ActiveSequences({ clock, staleRequestSecs: 300 });
    seqs.add('old', 0, { prefillTokens: 10, blocks: hashes(H1) });
    clock.advance(200_000);
    seqs.add('young', 0, { prefillTokens: 20, blocks: hashes(H2) });
    clock.advance(100_001);
    seqs.add('trigger', 1, { prefillTokens: 1 });
    expect(seqs.has('old')).toBe(false);
    expect(seqs.has('young')).toBe(true);
    expect(loadsOf(seqs, 0)).toEqual({ blocks: 1, prefill: 20, requests: 1 });
    clock.advance(300_000);
    expect(seqs.expireStale()).toBe(2);
    expect(seqs.requestCount).toBe(0);
  });

  it('output blocks add load and decay the blocks only this request holds', () => {
    const seqs = new ActiveSequences({ clock: new ManualClock() });
    seqs.add('a', 0, { prefillTokens: 0, blocks: hashes(H1, H2) });
    seqs.add('b', 0, { prefillTokens: 0, blocks: hashes(H1) });
    expect(seqs.addOutputBlock('a', 1)).toBe(true);
    expect(seqs.activeBlocks(0)).toBe(3);
    // decay 0: H2 and a's output block weigh 0; H1 is shared with b and keeps weight 1.
    seqs.addOutputBlock('a', 0);
    expect(seqs.activeBlocks(0)).toBe(1);
    seqs.free('b');
    expect(seqs.activeBlocks(0)).toBe(1); // H1 alone, still weight 1 (set before b left)
    seqs.free('a');
    expect(seqs.activeBlocks(0)).toBe(0);
    expect(seqs.addOutputBlock('a')).toBe(false);
  });

  it('survives block lists that are not rolling-hash chains: no crash, nothing left after free', () => {
    const seqs = new ActiveSequences({ clock: new ManualClock() });
    seqs.add('a', 0, { prefillTokens: 0, blocks: hashes(H2) });
    seqs.add('b', 0, { prefillTokens: 0, blocks: hashes(H1, H2) });
    seqs.add('c', 0, { prefillTokens: 0, blocks: hashes(H2, H1) });
    seqs.add('d', 0, { prefillTokens: 0, blocks: hashes(H3, H3, H3) });
    const out = new Float64Array(1);
    seqs.potentialDecodeBlocks(hashes(H1, H2, H3), 3, 0, Int32Array.of(0), 1, out);
    expect(Number.isFinite(out[0])).toBe(true);
    for (const id of ['c', 'a', 'd', 'b']) expect(seqs.free(id)).toBe(true);
    expect(seqs.nodes).toBe(0);
    expect(seqs.activeBlocks(0)).toBe(0);
  });

  it('keeps counts right when many owners share blocks (owner sets past the in-place scan size)', () => {
    const seqs = new ActiveSequences({ clock: new ManualClock() });
    const shared = hashes(H1, H2, H3);
    const ids: string[] = [];
    for (let round = 0; round < 2; round++)
      for (let owner = 0; owner < 20; owner++) {
        const id = `r${round}-${owner}`;
        ids.push(id);
        // Even owners extend the shared prefix with a block of their own.
        const blocks = owner % 2 === 0 ? hashes(H1, H2, H3, BigInt(1000 + owner)) : shared;
        expect(seqs.add(id, owner, { prefillTokens: 1, blocks })).toBe(true);
      }
    for (let owner = 0; owner < 20; owner++) {
      expect(seqs.activeBlocks(owner)).toBe(owner % 2 === 0 ? 4 : 3);
      expect(seqs.activeRequests(owner)).toBe(2);
    }
    const held = seqs.matchChain(hashes(H1, H2, H4), 3);
    for (let owner = 0; owner < 20; owner++) expect(held[owner]).toBe(2);
    seqs.releaseMatch();
    // Free in a scrambled order: each owner's blocks stay until its last request goes.
    const order = ids.map((id, i) => [(i * 7) % ids.length, id] as const).sort((a, b) => a[0] - b[0]);
    for (const [, id] of order.slice(0, 20)) expect(seqs.free(id)).toBe(true);
    for (const [, id] of order.slice(20)) expect(seqs.free(id)).toBe(true);
    for (let owner = 0; owner < 20; owner++) expect(seqs.activeBlocks(owner)).toBe(0);
    expect(seqs.nodes).toBe(0);
  });

  it('removeOwner frees every request of that owner only', () => {
    const seqs = new ActiveSequences({ clock: new ManualClock() });
    seqs.add('a', 0, { prefillTokens: 3, blocks: hashes(H1) });
    seqs.add('b', 0, { prefillTokens: 4, blocks: hashes(H2) });
    seqs.add('c', 1, { prefillTokens: 5, blocks: hashes(H1) });
    expect(seqs.removeOwner(0).sort()).toEqual(['a', 'b']);
    expect(loadsOf(seqs, 0)).toEqual({ blocks: 0, prefill: 0, requests: 0 });
    expect(loadsOf(seqs, 1)).toEqual({ blocks: 1, prefill: 5, requests: 1 });
  });
});

describe('ActiveSequences against a reference model', () => {
  // Chains of rolling "hashes" over a small alphabet, so prompts share prefixes often. The hash of
  // block i identifies the whole prefix 0..i, as sequence hashes do; high halves exercise bit 63.
  function chain(letters: number[]): Uint32Array {
    const out = new Uint32Array(letters.length * 2);
    let h = 0x9e37_79b9;
    for (let i = 0; i < letters.length; i++) {
      h = Math.imul(h ^ (letters[i] + 1), 0x85eb_ca6b) ^ (h >>> 13);
      out[2 * i] = h >>> 0;
      out[2 * i + 1] = (h ^ 0x8000_0000) >>> 0;
    }
    return out;
  }

  // 12 owners: node owner sets grow past the size scanned in place (the (node, owner) table is used).
  it.each([5, 12])(
    'matches naive per-owner reference counting for adds, frees and potential loads (%i owners)',
    (ownerCount) => {
      const op = fc.oneof(
        fc.record({
          kind: fc.constant('add' as const),
          owner: fc.integer({ min: 0, max: ownerCount - 1 }),
          letters: fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 7 }),
          // 0: a fresh array; 1: matchChain first, then add the same (reused) buffer before
          // releaseMatch, as the router does; 2: match, release, then add; 3: match another chain of
          // the same length in the buffer, release, overwrite the buffer, add (no stale walk reused).
          matched: fc.integer({ min: 0, max: 3 }),
        }),
        fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }),
        fc.record({
          kind: fc.constant('query' as const),
          letters: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 8 }),
        }),
      );
      const buffer = new Uint32Array(16);
      fc.assert(
        fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
          const seqs = new ActiveSequences({ clock: new ManualClock() });
          seqs.ensureOwners(ownerCount);
          const model = new Map<string, { owner: number; keys: string[] }>();
          const unique = (owner: number) => {
            const set = new Set<string>();
            for (const r of model.values()) if (r.owner === owner) for (const k of r.keys) set.add(k);
            return set;
          };
          const keysOf = (packed: Uint32Array) =>
            Array.from({ length: packed.length / 2 }, (_, i) => `${packed[2 * i]}:${packed[2 * i + 1]}`);
          let next = 0;
          for (const o of ops) {
            if (o.kind === 'add') {
              const id = `r${next++}`;
              const blocksOf = chain(o.letters);
              const n = o.letters.length;
              if (o.matched === 0) seqs.add(id, o.owner, { prefillTokens: 1, blocks: blocksOf });
              else {
                if (o.matched === 3) {
                  buffer.set(chain(o.letters.map((l) => (l + 1) % 3)));
                  seqs.matchChain(buffer, n);
                  seqs.releaseMatch();
                }
                buffer.set(blocksOf);
                if (o.matched !== 3) seqs.matchChain(buffer, n);
                if (o.matched === 2) seqs.releaseMatch();
                seqs.add(id, o.owner, { prefillTokens: 1, blocks: buffer, blockCount: n });
                if (o.matched === 1) seqs.releaseMatch();
              }
              model.set(id, { owner: o.owner, keys: keysOf(blocksOf) });
            } else if (o.kind === 'free') {
              const ids = [...model.keys()];
              if (ids.length === 0) continue;
              const id = ids[o.pick % ids.length];
              expect(seqs.free(id)).toBe(true);
              model.delete(id);
            } else {
              const q = chain(o.letters);
              const owners = Int32Array.from({ length: ownerCount }, (_, owner) => owner);
              const out = new Float64Array(ownerCount);
              seqs.potentialDecodeBlocks(q, o.letters.length, 0, owners, ownerCount, out);
              for (let owner = 0; owner < ownerCount; owner++) {
                const u = unique(owner);
                const fresh = keysOf(q).filter((k) => !u.has(k)).length;
                expect(out[owner]).toBe(fresh + u.size);
              }
            }
            for (let owner = 0; owner < ownerCount; owner++)
              expect(seqs.activeBlocks(owner)).toBe(unique(owner).size);
          }
          for (const id of [...model.keys()]) seqs.free(id);
          expect(seqs.nodes).toBe(0);
        }),
        { numRuns: 300 },
      );
    },
  );
});

describe('ActiveSequences against a reference model with output-block decay and long chains', () => {
  /** Rolling chain over letters; equal prefixes give equal hashes, as sequence hashes do. */
  function chain(letters: readonly number[]): Uint32Array {
    const out = new Uint32Array(letters.length * 2);
    let h = 0x2545_f491;
    for (let i = 0; i < letters.length; i++) {
      h = Math.imul(h ^ (letters[i] + 0x9e37), 0x85eb_ca6b);
      h ^= h >>> 13;
      out[2 * i] = h >>> 0;
      out[2 * i + 1] = Math.imul(h, 0xc2b2_ae35) >>> 0;
    }
    return out;
  }

  /** Naive model: per owner, every block key with its request count and weight. */
  class Model {
    readonly owners = new Map<number, Map<string, { count: number; weight: number }>>();
    readonly requests = new Map<
      string,
      { owner: number; keys: string[]; unshared: number; unsharedWeight: number }
    >();
    add(id: string, owner: number, packed: Uint32Array): void {
      const keys = Array.from(
        { length: packed.length / 2 },
        (_, i) => `${packed[2 * i]}:${packed[2 * i + 1]}`,
      );
      const blocks = this.owners.get(owner) ?? new Map();
      this.owners.set(owner, blocks);
      for (const key of keys) {
        const entry = blocks.get(key);
        if (entry === undefined) blocks.set(key, { count: 1, weight: 1 });
        else entry.count++;
      }
      this.requests.set(id, { owner, keys, unshared: 0, unsharedWeight: 1 });
    }
    free(id: string): void {
      const request = this.requests.get(id)!;
      const blocks = this.owners.get(request.owner)!;
      for (const key of request.keys) {
        const entry = blocks.get(key)!;
        if (--entry.count === 0) blocks.delete(key);
      }
      this.requests.delete(id);
    }
    output(id: string, decay: number): void {
      const request = this.requests.get(id)!;
      request.unshared++;
      request.unsharedWeight = decay;
      const blocks = this.owners.get(request.owner)!;
      for (let i = request.keys.length - 1; i >= 0; i--) {
        const entry = blocks.get(request.keys[i])!;
        if (entry.count !== 1) break;
        entry.weight = decay;
      }
    }
    activeBlocks(owner: number): number {
      let sum = 0;
      for (const entry of this.owners.get(owner)?.values() ?? []) sum += entry.weight;
      for (const r of this.requests.values()) if (r.owner === owner) sum += r.unshared * r.unsharedWeight;
      return Math.max(0, Math.round(sum));
    }
    held(owner: number, packed: Uint32Array): number {
      const blocks = this.owners.get(owner);
      let n = 0;
      while (n < packed.length / 2 && blocks?.has(`${packed[2 * n]}:${packed[2 * n + 1]}`)) n++;
      return n;
    }
  }

  const OWNERS = 4;
  function check(seqs: ActiveSequences, model: Model, query: Uint32Array | null): void {
    for (let owner = 0; owner < OWNERS; owner++)
      expect(seqs.activeBlocks(owner)).toBe(model.activeBlocks(owner));
    let pairs = 0;
    for (const blocks of model.owners.values()) pairs += blocks.size;
    expect(seqs.nodes).toBe(pairs);
    if (query !== null && query.length > 0) {
      const n = query.length / 2;
      const held = seqs.matchChain(query, n);
      for (let owner = 0; owner < OWNERS; owner++) expect(held[owner]).toBe(model.held(owner, query));
      seqs.releaseMatch();
    }
  }

  it('matches the model under adds, frees, output blocks and queries (shared prefixes split and merge)', () => {
    const letters = fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 12 });
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('add' as const),
        owner: fc.integer({ min: 0, max: OWNERS - 1 }),
        letters,
      }),
      fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }),
      fc.record({
        kind: fc.constant('output' as const),
        pick: fc.nat(),
        decay: fc.constantFrom(0, 0.25, 0.5, 1),
      }),
      fc.record({ kind: fc.constant('query' as const), letters }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const seqs = new ActiveSequences({ clock: new ManualClock() });
        seqs.ensureOwners(OWNERS);
        const model = new Model();
        let next = 0;
        for (const o of ops) {
          let query: Uint32Array | null = null;
          const ids = [...model.requests.keys()];
          if (o.kind === 'add') {
            const id = `r${next++}`;
            const packed = chain(o.letters);
            seqs.add(id, o.owner, { prefillTokens: 0, blocks: packed });
            model.add(id, o.owner, packed);
          } else if (o.kind === 'free') {
            if (ids.length === 0) continue;
            const id = ids[o.pick % ids.length];
            expect(seqs.free(id)).toBe(true);
            model.free(id);
          } else if (o.kind === 'output') {
            if (ids.length === 0) continue;
            const id = ids[o.pick % ids.length];
            expect(seqs.addOutputBlock(id, o.decay)).toBe(true);
            model.output(id, o.decay);
          } else query = chain(o.letters);
          check(seqs, model, query);
        }
        for (const id of [...model.requests.keys()]) seqs.free(id);
        expect(seqs.nodes).toBe(0);
        for (let owner = 0; owner < OWNERS; owner++) expect(seqs.activeBlocks(owner)).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it('stays exact over long churn with long chains (storage growth and compaction)', () => {
    const seqs = new ActiveSequences({ clock: new ManualClock() });
    seqs.ensureOwners(OWNERS);
    const model = new Model();
    let x = 12_345;
    const rand = (n: number) => {
      x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0;
      return (x >>> 8) % n;
    };
    const live: string[] = [];
    for (let i = 0; i < 3000; i++) {
      // Long chains on a few shared prefixes, diverging at random depths.
      const group = rand(6);
      const letters = Array.from({ length: 40 + rand(120) }, (_, d) =>
        d < 20 + group * 5 ? group : rand(3),
      );
      const id = `q${i}`;
      const packed = chain(letters);
      const owner = rand(OWNERS);
      seqs.add(id, owner, { prefillTokens: 0, blocks: packed });
      model.add(id, owner, packed);
      live.push(id);
      if (live.length > 40) {
        const victim = live.splice(rand(live.length), 1)[0];
        seqs.free(victim);
        model.free(victim);
      }
      if (i % 97 === 0) check(seqs, model, chain(letters.slice(0, 30 + rand(100))));
    }
    check(seqs, model, null);
    for (const id of live) seqs.free(id);
    expect(seqs.nodes).toBe(0);
  });
});
