/**
 * The flags `kvgate serve` and `kvgate frontend` share: environment fallbacks (KVGATE_*), flags
 * winning over the environment, the router block size left to the workers unless given, busy
 * thresholds. Parsed with commander in-process (the spawned-CLI tests cover exit codes).
 */
import { Command } from 'commander';
import { afterEach, describe, expect, it } from 'vitest';
import {
  addFrontendOptions,
  busyThresholdsFrom,
  type FrontendFlags,
  routerConfigFrom,
} from '../../src/cli/frontend-flags.ts';

const saved = { ...process.env };
afterEach(() => {
  for (const key of Object.keys(process.env)) if (key.startsWith('KVGATE_')) delete process.env[key];
  Object.assign(process.env, saved);
});

function parse(args: string[], env: Record<string, string> = {}): FrontendFlags {
  Object.assign(process.env, env);
  const cmd = addFrontendOptions(new Command('test'), { host: '127.0.0.1' }).exitOverride();
  cmd.configureOutput({ writeErr: () => {}, writeOut: () => {} });
  cmd.parse(args, { from: 'user' });
  return cmd.opts<FrontendFlags>();
}

describe('frontend flags', () => {
  it('defaults', () => {
    const flags = parse([]);
    expect(flags).toMatchObject({
      host: '127.0.0.1',
      port: 8000,
      routerMode: 'kv',
      migrationLimit: 3,
      disaggMinUncachedTokens: 0,
    });
    expect(flags.enforceDisagg).toBeUndefined();
    expect(flags.apiKey).toBeUndefined();
    expect(busyThresholdsFrom(flags)).toEqual({});
  });

  it('every setting comes from KVGATE_* too; a flag wins over the environment', () => {
    const env = {
      KVGATE_PORT: '9123',
      KVGATE_ROUTER_MODE: 'least-loaded',
      KVGATE_MIGRATION_LIMIT: '0',
      KVGATE_API_KEY: 'k1, k2',
      KVGATE_ACTIVE_DECODE_BLOCKS_THRESHOLD: '0.85',
      KVGATE_ACTIVE_PREFILL_TOKENS_THRESHOLD: '10000',
      KVGATE_DISAGG_MIN_UNCACHED_TOKENS: '64',
    };
    const fromEnv = parse([], env);
    expect(fromEnv).toMatchObject({
      port: 9123,
      routerMode: 'least-loaded',
      migrationLimit: 0,
      disaggMinUncachedTokens: 64,
    });
    expect(fromEnv.apiKey).toEqual(['k1', 'k2']);
    expect(busyThresholdsFrom(fromEnv)).toEqual({
      activeDecodeBlocksThreshold: 0.85,
      activePrefillTokensThreshold: 10_000,
    });
    const flagWins = parse(['--port', '9001', '--api-key', 'a', '--api-key', 'b', '--enforce-disagg'], env);
    expect(flagWins.port).toBe(9001);
    expect(flagWins.apiKey).toEqual(['a', 'b']);
    expect(flagWins.enforceDisagg).toBe(true);
  });

  it('bad values are refused with the flag or variable named', () => {
    expect(() => parse(['--router-mode', 'fastest'])).toThrow(/--router-mode/);
    expect(() => parse(['--active-decode-blocks-threshold', '1.5'])).toThrow(/in \[0, 1\]/);
    expect(() => parse([], { KVGATE_MIGRATION_LIMIT: '-1' })).toThrow(/KVGATE_MIGRATION_LIMIT/);
    expect(() => parse(['--port', '65536'])).toThrow(/TCP port/);
  });

  it('the router block size is left to the workers unless given', () => {
    const none = routerConfigFrom(parse([]), {});
    expect(none.blockSizeGiven).toBe(false);
    expect(none.config).not.toHaveProperty('blockSize');
    expect(none.config).toMatchObject({ overlapScoreWeight: 1, routerTemperature: 0 });
    const given = routerConfigFrom(parse(['--router-block-size', '32', '--router-temperature', '0.5']), {});
    expect(given).toMatchObject({ blockSizeGiven: true, config: { blockSize: 32, routerTemperature: 0.5 } });
    const fromEnv = routerConfigFrom(parse([]), { KVGATE_ROUTER_BLOCK_SIZE: '128' });
    expect(fromEnv).toMatchObject({ blockSizeGiven: true, config: { blockSize: 128 } });
    expect(() => routerConfigFrom(parse(['--router-temperature', '-1']), {})).toThrow(/router-temperature/);
  });
});
