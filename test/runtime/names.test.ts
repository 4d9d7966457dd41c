import { describe, expect, it } from 'vitest';
import { AsyncQueue } from '../../src/runtime/async-queue.ts';
import { instanceKey, modelCardKey, parseDiscoveryKey } from '../../src/runtime/discovery-keys.ts';
import { FrameKind, parseServerFrame, serverFrame } from '../../src/runtime/nats/frames.ts';
import {
  assertSubscribeSubject,
  kvEventsSubject,
  requestSubject,
  streamNameForSubject,
  subjectMatches,
} from '../../src/runtime/subjects.ts';
import { endpointId, formatEndpointId, parseEndpointId, prefixMatches } from '../../src/runtime/types.ts';

describe('endpoint ids', () => {
  it('parses and formats ns.comp.ep', () => {
    const id = parseEndpointId('kvgate.prefill.generate');
    expect(id).toEqual({ namespace: 'kvgate', component: 'prefill', endpoint: 'generate' });
    expect(formatEndpointId(id)).toBe('kvgate.prefill.generate');
    expect(parseEndpointId('dyn://kvgate.backend.generate').component).toBe('backend');
  });

  it('rejects malformed names', () => {
    for (const bad of ['kvgate.backend', 'a.b.c.d', 'a..c', 'a.b c.d', 'a/b.c.d'])
      expect(() => parseEndpointId(bad)).toThrow(/endpoint|name/);
    expect(() => endpointId('a', 'b', '*')).toThrow(/invalid endpoint name/);
  });

  it('matches prefixes', () => {
    const id = endpointId('kvgate', 'backend', 'generate');
    expect(prefixMatches({ namespace: 'kvgate' }, id)).toBe(true);
    expect(prefixMatches({ namespace: 'kvgate', component: 'backend', endpoint: 'generate' }, id)).toBe(true);
    expect(prefixMatches({ namespace: 'kvgate', component: 'prefill' }, id)).toBe(false);
  });
});

describe('discovery keys', () => {
  it('uses Dynamo layout with hex instance ids and parses back', () => {
    const ep = endpointId('kvgate', 'backend', 'generate');
    expect(instanceKey(ep, 0x694d9a1b2c3d4e5fn)).toBe(
      'v1/instances/kvgate/backend/generate/694d9a1b2c3d4e5f',
    );
    expect(modelCardKey(ep, 255n)).toBe('v1/mdc/kvgate/backend/generate/ff');
    expect(parseDiscoveryKey('v1/instances/kvgate/backend/generate/ffffffffffffffff')).toEqual({
      kind: 'instances',
      endpoint: ep,
      instanceId: 0xffffffffffffffffn,
    });
    for (const bad of [
      'v1/instances/kvgate/backend/generate/xyz',
      'v1/instances/kvgate/backend/generate/1ffffffffffffffff',
      'v1/other/kvgate/backend/generate/1',
      'v1/instances/kvgate/backend/1',
    ])
      expect(parseDiscoveryKey(bad)).toBeUndefined();
  });
});

describe('subjects', () => {
  const match = (pattern: string, subject: string) => subjectMatches(pattern.split('.'), subject.split('.'));

  it('follows NATS wildcard rules', () => {
    expect(match('a.*.c', 'a.b.c')).toBe(true);
    expect(match('a.*.c', 'a.b.c.d')).toBe(false);
    expect(match('a.>', 'a.b')).toBe(true);
    expect(match('a.>', 'a.b.c.d')).toBe(true);
    expect(match('a.>', 'a')).toBe(false);
    expect(match('a.b', 'a.b')).toBe(true);
    expect(match('*', 'a.b')).toBe(false);
    expect(() => assertSubscribeSubject('a.>.b')).toThrow();
    expect(() => assertSubscribeSubject('a..b')).toThrow();
  });

  it('names Dynamo subjects and streams', () => {
    expect(kvEventsSubject('kvgate', 'backend')).toBe('namespace.kvgate.component.backend.kv-events');
    expect(streamNameForSubject('namespace.my_ns.component.backend.kv-events')).toBe(
      'namespace-my-ns-component-backend-kv-events',
    );
    expect(requestSubject(endpointId('kvgate', 'backend', 'generate'), 0xabn)).toBe(
      'kvgate-rq.kvgate.backend.generate.ab',
    );
  });
});

describe('request frames', () => {
  it('round-trips kind, sequence and body', () => {
    const frame = parseServerFrame(serverFrame(FrameKind.data, 0xfffffffe, new Uint8Array([9, 8])));
    expect(frame?.kind).toBe(FrameKind.data);
    expect(frame?.seq).toBe(0xfffffffe);
    expect([...(frame?.body ?? [])]).toEqual([9, 8]);
    expect(parseServerFrame(new Uint8Array([FrameKind.end, 0, 0, 0]))).toBeUndefined();
    expect(parseServerFrame(new Uint8Array([0x7f, 0, 0, 0, 0]))).toBeUndefined();
  });
});

describe('AsyncQueue', () => {
  it('delivers pushed values before an end or a failure, failNow drops them', async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    const pending = q.next();
    q.push(2);
    q.fail(new Error('boom'));
    expect(await pending).toEqual({ value: 1, done: false });
    expect(await q.next()).toEqual({ value: 2, done: false });
    await expect(q.next()).rejects.toThrow('boom');
    const r = new AsyncQueue<number>();
    r.push(1);
    r.failNow(new Error('now'));
    await expect(r.next()).rejects.toThrow('now');
  });
});
