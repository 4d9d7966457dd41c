/**
 * KvRouterConfig: Dynamo's router settings with Dynamo's defaults (reference dynamo-router.md §4),
 * validated with zod, settable from `--router-*` flags and `KVGATE_ROUTER_*` environment variables
 * (flags win over the environment, the environment over defaults), plus per-request overrides.
 */
import { type Command, Option } from 'commander';
import { z } from 'zod';
import { InvalidOverrideError, InvalidRouterConfigError } from './errors.ts';

const nonNegative = z.number().finite().min(0);
const positive = z.number().finite().positive();

export const kvRouterConfigSchema = z
  .strictObject({
    /** Weight of prefill blocks against decode blocks in the cost; 0 = load only. */
    overlapScoreWeight: nonNegative.default(1),
    /**
     * Weight of a rank's queued prefill tokens against this request's uncached tokens inside the
     * prefill term (1 = Dynamo's cost). Below 1 the router keeps a prefix where it is cached a little
     * longer when that rank is busy, instead of recomputing it elsewhere: recomputation costs every
     * request capacity, queueing costs only this one time.
     */
    prefillQueueWeight: nonNegative.default(1),
    /** Softmax temperature over normalised costs; 0 = deterministic argmin. */
    routerTemperature: nonNegative.default(0),
    /** false = approximate mode: the router learns the caches from its own decisions. */
    useKvEvents: z.boolean().default(true),
    /** KV events through JetStream (requires useKvEvents). */
    durableKvEvents: z.boolean().default(false),
    /** Share active sequences with the other router replicas. */
    replicaSync: z.boolean().default(false),
    /** Track each request's blocks for decode load; off for prefill pools. */
    trackActiveBlocks: z.boolean().default(true),
    /** Count generated output blocks as load too (requires trackActiveBlocks). */
    trackOutputBlocks: z.boolean().default(false),
    /** false = no two requests share active blocks (no dedup of decode load). */
    assumeKvReuse: z.boolean().default(true),
    /** JetStream: snapshot the tree once this many messages are pending. */
    snapshotThreshold: z.int().positive().default(1_000_000),
    /** JetStream: start from a fresh state instead of the stored snapshot. */
    resetStates: z.boolean().default(false),
    /** Approximate mode: lifetime of a block learned from a routing decision. */
    ttlSecs: positive.default(120),
    /** Approximate mode: prune the index when it holds more blocks than this. */
    maxTreeSize: z
      .int()
      .positive()
      .default(2 ** 20),
    /** Approximate mode: prune down to maxTreeSize × this ratio. */
    pruneTargetRatio: z.number().gt(0).max(1).default(0.8),
    /** > 0 parks requests while every rank has more than this × max_num_batched_tokens in prefill. */
    queueThreshold: positive.nullable().default(null),
    /** Tokens per KV block; every worker behind this router must use the same. */
    blockSize: z.int().min(1).max(65_536).default(16),
    /** Short-lived index of the router's own decisions, consulted next to the event index (off = null). */
    predictedTtlSecs: positive.nullable().default(null),
    /** Requests still tracked after this long are freed (lost streams). */
    staleRequestSecs: positive.default(300),
  })
  .superRefine((config, ctx) => {
    if (config.durableKvEvents && !config.useKvEvents)
      ctx.addIssue({
        code: 'custom',
        path: ['durableKvEvents'],
        message: 'durableKvEvents requires useKvEvents',
      });
    if (config.trackOutputBlocks && !config.trackActiveBlocks)
      ctx.addIssue({
        code: 'custom',
        path: ['trackOutputBlocks'],
        message: 'trackOutputBlocks requires trackActiveBlocks',
      });
  });

export type KvRouterConfig = z.output<typeof kvRouterConfigSchema>;
export type KvRouterConfigInput = z.input<typeof kvRouterConfigSchema>;

/** Validates a config (missing fields take their defaults); throws InvalidRouterConfigError. */
export function parseRouterConfig(input: unknown = {}, sourceOf?: (field: string) => string): KvRouterConfig {
  const result = kvRouterConfigSchema.safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const field = issue.path.join('.');
    const where = sourceOf && field ? sourceOf(field) : field || 'config';
    return `${where}: ${issue.message}`;
  });
  throw new InvalidRouterConfigError(`invalid router config: ${problems.join('; ')}`);
}

export const defaultRouterConfig: KvRouterConfig = parseRouterConfig({});

/** Per-request overrides (Dynamo's RouterConfigOverride). */
export interface RouterOverrides {
  readonly overlapScoreWeight?: number;
  readonly routerTemperature?: number;
  readonly assumeKvReuse?: boolean;
}

export const routerOverridesSchema = z.strictObject({
  overlapScoreWeight: nonNegative.optional(),
  routerTemperature: nonNegative.optional(),
  assumeKvReuse: z.boolean().optional(),
});

/** Throws InvalidOverrideError unless every present field is in range. */
export function checkOverrides(overrides: RouterOverrides): void {
  const weight = overrides.overlapScoreWeight;
  if (weight !== undefined && !(typeof weight === 'number' && Number.isFinite(weight) && weight >= 0))
    throw new InvalidOverrideError(`overlapScoreWeight must be a finite number >= 0, got ${String(weight)}`);
  const temperature = overrides.routerTemperature;
  if (
    temperature !== undefined &&
    !(typeof temperature === 'number' && Number.isFinite(temperature) && temperature >= 0)
  )
    throw new InvalidOverrideError(
      `routerTemperature must be a finite number >= 0, got ${String(temperature)}`,
    );
  const reuse = overrides.assumeKvReuse;
  if (reuse !== undefined && typeof reuse !== 'boolean')
    throw new InvalidOverrideError(`assumeKvReuse must be a boolean, got ${String(reuse)}`);
}

/** Parses untrusted overrides (e.g. from an HTTP body) into RouterOverrides. */
export function parseOverrides(input: unknown): RouterOverrides {
  const result = routerOverridesSchema.safeParse(input);
  if (result.success) return result.data;
  throw new InvalidOverrideError(`invalid router overrides: ${z.prettifyError(result.error)}`);
}

// ---- CLI flags and environment -------------------------------------------------------------

type FieldKind = 'number' | 'int' | 'boolean' | 'optionalNumber';
type ConfigField = keyof KvRouterConfig;

interface FlagSpec {
  readonly field: ConfigField;
  /** Flag name without the leading `--router-`; the env var is KVGATE_ROUTER_<NAME>. */
  readonly name: string;
  readonly kind: FieldKind;
  readonly help: string;
}

const FLAGS: readonly FlagSpec[] = [
  {
    field: 'overlapScoreWeight',
    name: 'kv-overlap-score-weight',
    kind: 'number',
    help: 'weight of prefill blocks in the cost (0 = load only)',
  },
  {
    field: 'prefillQueueWeight',
    name: 'prefill-queue-weight',
    kind: 'number',
    help: "weight of a rank's queued prefill tokens inside the prefill term (1 = Dynamo's cost)",
  },
  {
    field: 'routerTemperature',
    name: 'temperature',
    kind: 'number',
    help: 'softmax temperature (0 = argmin)',
  },
  {
    field: 'useKvEvents',
    name: 'kv-events',
    kind: 'boolean',
    help: 'use engine KV events (off = approximate mode)',
  },
  {
    field: 'durableKvEvents',
    name: 'durable-kv-events',
    kind: 'boolean',
    help: 'KV events through JetStream',
  },
  {
    field: 'replicaSync',
    name: 'replica-sync',
    kind: 'boolean',
    help: 'share active sequences with other router replicas',
  },
  {
    field: 'trackActiveBlocks',
    name: 'track-active-blocks',
    kind: 'boolean',
    help: 'track active blocks for decode load',
  },
  {
    field: 'trackOutputBlocks',
    name: 'track-output-blocks',
    kind: 'boolean',
    help: 'count output blocks as load',
  },
  {
    field: 'assumeKvReuse',
    name: 'assume-kv-reuse',
    kind: 'boolean',
    help: 'deduplicate active blocks shared by requests',
  },
  {
    field: 'snapshotThreshold',
    name: 'snapshot-threshold',
    kind: 'int',
    help: 'JetStream messages before a snapshot',
  },
  {
    field: 'resetStates',
    name: 'reset-states',
    kind: 'boolean',
    help: 'JetStream: ignore the stored snapshot',
  },
  { field: 'ttlSecs', name: 'ttl-secs', kind: 'number', help: 'approximate mode: block lifetime in seconds' },
  {
    field: 'maxTreeSize',
    name: 'max-tree-size',
    kind: 'int',
    help: 'approximate mode: prune above this many blocks',
  },
  {
    field: 'pruneTargetRatio',
    name: 'prune-target-ratio',
    kind: 'number',
    help: 'approximate mode: prune to this share of the max',
  },
  {
    field: 'queueThreshold',
    name: 'queue-threshold',
    kind: 'optionalNumber',
    help: 'queue when every rank is above this × max batched tokens ("none" = off)',
  },
  { field: 'blockSize', name: 'block-size', kind: 'int', help: 'tokens per KV block' },
  {
    field: 'predictedTtlSecs',
    name: 'predicted-ttl-secs',
    kind: 'optionalNumber',
    help: 'lifetime of predicted blocks from own decisions ("none" = off)',
  },
  {
    field: 'staleRequestSecs',
    name: 'stale-request-secs',
    kind: 'number',
    help: 'free requests tracked longer than this',
  },
];

function envName(spec: FlagSpec): string {
  return `KVGATE_ROUTER_${spec.name.toUpperCase().replaceAll('-', '_')}`;
}

function attributeName(spec: FlagSpec): string {
  return new Option(`--router-${spec.name}`).attributeName();
}

/** Adds every `--router-*` flag to a commander command (booleans get `--x` and `--no-x`). */
export function addRouterOptions(cmd: Command): Command {
  for (const spec of FLAGS) {
    const fallback = defaultRouterConfig[spec.field];
    const defaultText = `default ${fallback === null ? 'none' : String(fallback)}; env ${envName(spec)}`;
    if (spec.kind === 'boolean') {
      // Both forms, so an absent flag stays undefined and the environment can still apply.
      cmd.addOption(new Option(`--router-${spec.name}`, `${spec.help} (${defaultText})`));
      cmd.addOption(new Option(`--no-router-${spec.name}`, `disable --router-${spec.name}`));
    } else {
      cmd.addOption(new Option(`--router-${spec.name} <value>`, `${spec.help} (${defaultText})`));
    }
  }
  return cmd;
}

function parseValue(spec: FlagSpec, raw: unknown, source: string): unknown {
  if (typeof raw !== 'string') return raw;
  const text = raw.trim();
  if (spec.kind === 'boolean') {
    const lower = text.toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(lower)) return true;
    if (['0', 'false', 'no', 'off'].includes(lower)) return false;
    throw new InvalidRouterConfigError(
      `${source}: expected a boolean (true/false), got ${JSON.stringify(raw)}`,
    );
  }
  if (spec.kind === 'optionalNumber' && ['none', 'off', 'null'].includes(text.toLowerCase())) return null;
  const value = text === '' ? Number.NaN : Number(text);
  if (Number.isNaN(value))
    throw new InvalidRouterConfigError(`${source}: expected a number, got ${JSON.stringify(raw)}`);
  return value;
}

/**
 * Builds a validated config from parsed commander options (flags added by addRouterOptions) and an
 * environment. Flags win over `KVGATE_ROUTER_*`, which win over the defaults.
 */
export function routerConfigFromOptions(
  opts: Readonly<Record<string, unknown>>,
  env: Readonly<Record<string, string | undefined>> = process.env,
): KvRouterConfig {
  const raw: Record<string, unknown> = {};
  const sources = new Map<string, string>();
  for (const spec of FLAGS) {
    const fromFlag = opts[attributeName(spec)];
    if (fromFlag !== undefined) {
      const source = `--router-${spec.name}`;
      raw[spec.field] = parseValue(spec, fromFlag, source);
      sources.set(spec.field, source);
      continue;
    }
    const fromEnv = env[envName(spec)];
    if (fromEnv !== undefined) {
      const source = envName(spec);
      raw[spec.field] = parseValue(spec, fromEnv, source);
      sources.set(spec.field, source);
    }
  }
  return parseRouterConfig(raw, (field) => sources.get(field) ?? field);
}
