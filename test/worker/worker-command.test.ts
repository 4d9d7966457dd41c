import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runtimeSettingsFromOptions } from '../../src/cli/runtime-options.ts';
import { CliUsageError } from '../../src/cli/usage.ts';

const KVGATE = fileURLToPath(new URL('../../bin/kvgate.js', import.meta.url));

function run(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [KVGATE, 'worker', ...args], {
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, KVGATE_NATS: '', KVGATE_ETCD: '', ...env },
  });
  return { status: result.status, stderr: result.stderr };
}

describe('kvgate worker: flag validation', () => {
  // Each run starts a process through tsx (seconds on a busy 2-core box): three cover the three
  // layers (commander parsing, runtime flags, the worker's own check); the rest is unit-tested below.
  it.each([
    [['--model', 'm'], /joins a distributed runtime/],
    [['--model', 'm', '--dp-size', '0'], /--dp-size/],
    [['--model', 'm', '--nats', 'nats://h:1', '--etcd', 'h:2', '--lease-ttl', '0'], /--lease-ttl/],
  ])('%j exits with code 2 and a clear message, no stack trace', (args, message) => {
    const { status, stderr } = run(args);
    expect(status).toBe(2);
    expect(stderr).toMatch(message);
    expect(stderr).not.toMatch(/\n\s+at /);
  });
});

describe('runtime flags', () => {
  it('reads flags, falls back to KVGATE_* variables, and lets flags win', () => {
    const env = {
      KVGATE_NATS: 'nats://env:4222',
      KVGATE_ETCD: 'env:2379',
      KVGATE_LEASE_TTL: '3',
      KVGATE_NAMESPACE: 'envns',
    };
    const fromEnv = runtimeSettingsFromOptions({}, env);
    expect(fromEnv.namespace).toBe('envns');
    expect(fromEnv.distributed).toMatchObject({
      nats: { servers: ['nats://env:4222'] },
      etcd: { hosts: ['env:2379'] },
      leaseTtlSeconds: 3,
    });
    const fromFlags = runtimeSettingsFromOptions(
      {
        nats: 'nats://a:1,nats://b:2',
        etcd: 'http://e:2379',
        namespace: 'flagns',
        natsUser: 'u',
        natsPass: 'p',
      },
      env,
    );
    expect(fromFlags.namespace).toBe('flagns');
    expect(fromFlags.distributed).toMatchObject({
      nats: { servers: ['nats://a:1', 'nats://b:2'], user: 'u', pass: 'p' },
      etcd: { hosts: ['http://e:2379'] },
      leaseTtlSeconds: 3,
    });
  });

  it('without NATS and etcd there is no distributed runtime; half of it is an error', () => {
    expect(runtimeSettingsFromOptions({}, {})).toEqual({ namespace: 'kvgate' });
    expect(() => runtimeSettingsFromOptions({ etcd: 'h:1' }, {})).toThrow(CliUsageError);
    expect(() => runtimeSettingsFromOptions({ nats: 'h:1', etcd: 'h:2', natsUser: 'u' }, {})).toThrow(
      /go together/,
    );
    expect(() => runtimeSettingsFromOptions({ nats: 'not a url', etcd: 'h:2' }, {})).toThrow(
      /not a NATS URL/,
    );
    expect(() => runtimeSettingsFromOptions({ nats: 'h:1', etcd: 'h:2', namespace: 'a.b' }, {})).toThrow(
      /namespace/,
    );
    expect(() => runtimeSettingsFromOptions({ nats: 'h:1', etcd: 'h:2', leaseTtl: '1.5' }, {})).toThrow(
      /--lease-ttl/,
    );
    expect(() =>
      runtimeSettingsFromOptions({ nats: 'h:1', etcd: 'h:2', natsTlsCa: '/no/such/file' }, {}),
    ).toThrow(/cannot read/);
    expect(() => runtimeSettingsFromOptions({ nats: 'h:1', etcd: 'h:2', etcdTlsCert: '/x' }, {})).toThrow(
      /go together/,
    );
  });
});
