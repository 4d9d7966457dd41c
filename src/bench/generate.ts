/**
 * Synthetic workloads in the Mooncake trace format, for tests and what-if replays:
 * - shared-prefix groups: `groups` system prompts of `prefixBlocks` blocks, each request one group's
 *   prompt plus a private suffix of `suffixBlocks` blocks (the last one partial);
 * - multi-turn conversations: `conversations` live at a time, each turn's hash ids extend the
 *   previous turn's by `turnBlocks` (a conversation starts from a group's system prompt and ends
 *   after `turns` turns, when a new one takes its place);
 * - best-of-N bursts: with probability `bestOfFraction` an arrival is `bestOf` identical prompts at
 *   the same timestamp;
 * - Poisson arrivals at `rate` per second.
 * Everything is drawn from one seeded PRNG: the same options give the same trace.
 */
import { z } from 'zod';
import { SeededRandom } from './random.ts';
import { MOONCAKE_BLOCK_SIZE, type TraceRequest } from './trace.ts';

export const generateOptionsSchema = z
  .object({
    seed: z.number().int().default(1),
    /** Arrivals (a best-of-N burst is one arrival of `bestOf` requests). */
    arrivals: z.number().int().positive().default(200),
    /** Arrivals per second (Poisson). */
    rate: z.number().positive().finite().default(10),
    traceBlockSize: z.number().int().positive().default(MOONCAKE_BLOCK_SIZE),
    groups: z.number().int().positive().default(8),
    prefixBlocks: z.number().int().nonnegative().default(8),
    suffixBlocks: z.number().int().positive().default(2),
    conversations: z.number().int().nonnegative().default(0),
    turns: z.number().int().positive().default(4),
    turnBlocks: z.number().int().positive().default(2),
    /** Share of arrivals that are a conversation turn (when conversations > 0). */
    conversationFraction: z.number().min(0).max(1).default(0.5),
    bestOf: z.number().int().positive().default(1),
    bestOfFraction: z.number().min(0).max(1).default(0),
    /** Output lengths are uniform in [outputLength / 2, outputLength * 3 / 2]. */
    outputLength: z.number().int().positive().default(64),
  })
  .strict();

export type GenerateOptions = z.input<typeof generateOptionsSchema>;

interface Conversation {
  hashIds: number[];
  turn: number;
}

export function generateTrace(options: GenerateOptions = {}): TraceRequest[] {
  const o = generateOptionsSchema.parse(options);
  const rng = new SeededRandom(o.seed);
  let nextId = 0;
  const fresh = (n: number): number[] => Array.from({ length: n }, () => nextId++);

  const systemPrompts = Array.from({ length: o.groups }, () => fresh(o.prefixBlocks));
  const pickGroup = (): number[] => systemPrompts[rng.int(0, o.groups - 1)];
  const conversations: Conversation[] = [];
  const startConversation = (): Conversation => ({ hashIds: [...pickGroup()], turn: 0 });
  for (let i = 0; i < o.conversations; i++) conversations.push(startConversation());

  const requests: TraceRequest[] = [];
  let time = 0;
  for (let a = 0; a < o.arrivals; a++) {
    if (a > 0) time += rng.exponential(1000 / o.rate);
    let hashIds: number[];
    if (conversations.length > 0 && rng.next() < o.conversationFraction) {
      const slot = rng.int(0, conversations.length - 1);
      const conv = conversations[slot];
      conv.hashIds.push(...fresh(o.turnBlocks));
      conv.turn++;
      hashIds = [...conv.hashIds];
      if (conv.turn >= o.turns) conversations[slot] = startConversation();
    } else {
      hashIds = [...pickGroup(), ...fresh(o.suffixBlocks)];
    }
    const lastBlock = rng.int(1, o.traceBlockSize);
    const inputLength = (hashIds.length - 1) * o.traceBlockSize + lastBlock;
    const copies = o.bestOf > 1 && rng.next() < o.bestOfFraction ? o.bestOf : 1;
    const timestamp = Math.round(time * 1000) / 1000;
    for (let c = 0; c < copies; c++) {
      const outputLength = rng.int(
        Math.max(1, Math.floor(o.outputLength / 2)),
        Math.ceil((o.outputLength * 3) / 2),
      );
      requests.push({ timestamp, inputLength, outputLength, hashIds });
    }
  }
  return requests;
}
