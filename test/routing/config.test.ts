import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import {
  addRouterOptions,
  checkOverrides,
  defaultRouterConfig,
  parseOverrides,
  parseRouterConfig,
  routerConfigFromOptions,
} from '../../src/routing/config.ts';
import { InvalidOverrideError, InvalidRouterConfigError } from '../../src/routing/errors.ts';

function parseFlags(argv: string[]) {
  const cmd = addRouterOptions(new Command().exitOverride());
  cmd.parse(argv, { from: 'user' });
  return cmd.opts();
}

describe('router config', () => {
  it("has Dynamo's defaults", () => {
    expect(defaultRouterConfig).toEqual({
      overlapScoreWeight: 1,
      prefillQueueWeight: 1,
      routerTemperature: 0,
      useKvEvents: true,
      durableKvEvents: false,
      replicaSync: false,
      trackActiveBlocks: true,
      trackOutputBlocks: false,
      assumeKvReuse: true,
      snapshotThreshold: 1_000_000,
      resetStates: false,
      ttlSecs: 120,
      maxTreeSize: 2 ** 20,
      pruneTargetRatio: 0.8,
      queueThreshold: null,
      blockSize: 16,
      predictedTtlSecs: null,
      staleRequestSecs: 300,
    });
  });

  it('rejects bad values and inconsistent combinations with clear messages', () => {
    expect(() => parseRouterConfig({ overlapScoreWeight: -1 })).toThrow(/overlapScoreWeight/);
    expect(() => parseRouterConfig({ pruneTargetRatio: 1.5 })).toThrow(InvalidRouterConfigError);
    expect(() => parseRouterConfig({ blockSize: 0 })).toThrow(/blockSize/);
    expect(() => parseRouterConfig({ useKvEvents: false, durableKvEvents: true })).toThrow(
      /requires useKvEvents/,
    );
    expect(() => parseRouterConfig({ trackActiveBlocks: false, trackOutputBlocks: true })).toThrow(
      /requires trackActiveBlocks/,
    );
    expect(() => parseRouterConfig({ routerTemprature: 1 })).toThrow(/routerTemprature/);
  });

  it('reads --router-* flags, KVGATE_ROUTER_* environment, flags first', () => {
    const opts = parseFlags([
      '--router-kv-overlap-score-weight',
      '0.5',
      '--no-router-kv-events',
      '--router-predicted-ttl-secs',
      '5',
      '--router-block-size',
      '64',
    ]);
    const config = routerConfigFromOptions(opts, {
      KVGATE_ROUTER_KV_OVERLAP_SCORE_WEIGHT: '3',
      KVGATE_ROUTER_TEMPERATURE: '0.25',
      KVGATE_ROUTER_TRACK_ACTIVE_BLOCKS: 'false',
      KVGATE_ROUTER_QUEUE_THRESHOLD: 'none',
    });
    expect(config).toMatchObject({
      overlapScoreWeight: 0.5,
      routerTemperature: 0.25,
      useKvEvents: false,
      trackActiveBlocks: false,
      predictedTtlSecs: 5,
      blockSize: 64,
      queueThreshold: null,
      ttlSecs: 120,
    });
  });

  it('a negated flag overrides the environment and an absent flag leaves the default', () => {
    const config = routerConfigFromOptions(parseFlags(['--no-router-assume-kv-reuse']), {
      KVGATE_ROUTER_ASSUME_KV_REUSE: 'true',
    });
    expect(config.assumeKvReuse).toBe(false);
    expect(config.useKvEvents).toBe(true);
    expect(routerConfigFromOptions(parseFlags(['--router-replica-sync']), {}).replicaSync).toBe(true);
  });

  it('names the flag or variable at fault', () => {
    expect(() => routerConfigFromOptions(parseFlags(['--router-temperature', 'hot']), {})).toThrow(
      /--router-temperature/,
    );
    expect(() => routerConfigFromOptions({}, { KVGATE_ROUTER_TTL_SECS: '-3' })).toThrow(
      /KVGATE_ROUTER_TTL_SECS/,
    );
    expect(() => routerConfigFromOptions({}, { KVGATE_ROUTER_REPLICA_SYNC: 'maybe' })).toThrow(
      /KVGATE_ROUTER_REPLICA_SYNC.*boolean/,
    );
  });

  it('validates per-request overrides', () => {
    expect(() => checkOverrides({ overlapScoreWeight: 0, routerTemperature: 2 })).not.toThrow();
    expect(() => checkOverrides({ overlapScoreWeight: -0.1 })).toThrow(InvalidOverrideError);
    expect(() => checkOverrides({ routerTemperature: Number.NaN })).toThrow(InvalidOverrideError);
    expect(() => checkOverrides({ routerTemperature: Number.POSITIVE_INFINITY })).toThrow(
      InvalidOverrideError,
    );
    expect(parseOverrides({ overlapScoreWeight: 2 })).toEqual({ overlapScoreWeight: 2 });
    expect(() => parseOverrides({ overlapScoreWeight: '2' })).toThrow(InvalidOverrideError);
    expect(() => parseOverrides({ weight: 2 })).toThrow(InvalidOverrideError);
  });
});
