/**
 * A byte-level BPE tokenizer loaded from a Hugging Face `tokenizer.json` (GPT-2, Llama 3, Qwen 2,
 * Mistral-Nemo style files): `model.vocab`, `model.merges` (either `"a b"` strings or `["a", "b"]`
 * pairs), `model.ignore_merges`, the normalizer and pre-tokenizer pipeline (hf-pretokenizer.ts),
 * and `added_tokens`.
 *
 * Added tokens that are not special (e.g. `<tool_call>` in Qwen) are matched in text as HF does;
 * special ones (`<|im_start|>`, `<|endoftext|>`) are only reachable by id through
 * `specialTokenId`, so text never turns into a special token. The end-of-sequence token comes from
 * `tokenizer_config.json` beside the file when present, else from a list of usual names.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  buildNormalizer,
  buildPreTokenizer,
  CHAR_TO_BYTE,
  type Normalizer,
  type PreTokenizer,
} from './hf-pretokenizer.ts';
import { type DecodeOptions, type Tokenizer, TokenizerError } from './tokenizer.ts';
import { mergeByRank } from './tokenizer-bpe.ts';

interface AddedToken {
  readonly id: number;
  readonly content: string;
  readonly special?: boolean;
  readonly lstrip?: boolean;
  readonly rstrip?: boolean;
}

export interface TokenizerJson {
  readonly added_tokens?: readonly AddedToken[];
  readonly normalizer?: Record<string, unknown> | null;
  readonly pre_tokenizer?: Record<string, unknown> | null;
  readonly decoder?: Record<string, unknown> | null;
  readonly post_processor?: Record<string, unknown> | null;
  readonly model: {
    readonly type?: string;
    readonly vocab: Record<string, number>;
    readonly merges: readonly (string | readonly [string, string])[];
    readonly ignore_merges?: boolean;
    readonly unk_token?: string | null;
    readonly byte_fallback?: boolean;
    readonly continuing_subword_prefix?: string | null;
    readonly end_of_word_suffix?: string | null;
  };
}

export interface HfTokenizerOptions {
  readonly name?: string;
  /** End-of-sequence token text; default from tokenizer_config.json or the usual names. */
  readonly eosToken?: string;
  /**
   * Beginning-of-sequence token put in front of raw text prompts; default: the special token the
   * post-processor's TemplateProcessing puts before the text, if any. null = none.
   */
  readonly bosToken?: string | null;
}

const USUAL_EOS = ['<|endoftext|>', '<|end_of_text|>', '<|eot_id|>', '</s>', '<|im_end|>'];
const WORD_CACHE_LIMIT = 50_000;
/** Words longer than this (in byte-level characters) are merged with the heap. */
const LONG_WORD = 64;
const utf8 = new TextEncoder();

export class HfBpeTokenizer implements Tokenizer {
  readonly name: string;
  readonly vocabSize: number;
  readonly eosTokenId: number | undefined;
  readonly bosTokenId: number | undefined;
  private readonly vocab = new Map<string, number>();
  private readonly tokenText: string[] = [];
  /** Pair (left id, right id) → merge rank; the merged id is `mergedId[rank]`. */
  private readonly mergeRank = new Map<number, number>();
  private readonly mergedId: Int32Array;
  private readonly pairBase: number;
  private readonly ignoreMerges: boolean;
  private readonly unkId: number | undefined;
  private readonly normalize: Normalizer;
  private readonly preTokenize: PreTokenizer;
  private readonly added = new Map<number, AddedToken>();
  private readonly specialByText = new Map<string, number>();
  private readonly addedByContent: ReadonlyMap<string, AddedToken>;
  private readonly addedPattern: RegExp | undefined;
  private readonly wordCache = new Map<string, readonly number[]>();

  constructor(json: TokenizerJson, options: HfTokenizerOptions = {}) {
    const model = json.model;
    if (!model || (model.type !== undefined && model.type !== 'BPE')) {
      throw new TokenizerError(`unsupported tokenizer model ${JSON.stringify(model?.type)} (BPE only)`);
    }
    if (model.continuing_subword_prefix || model.end_of_word_suffix) {
      throw new TokenizerError(
        'BPE with subword prefixes or word suffixes is not supported (byte-level BPE only)',
      );
    }
    if (json.decoder && json.decoder.type !== 'ByteLevel') {
      throw new TokenizerError(`unsupported decoder ${JSON.stringify(json.decoder.type)} (ByteLevel only)`);
    }
    this.name = options.name ?? 'tokenizer.json';
    this.normalize = buildNormalizer(json.normalizer as never);
    this.preTokenize = buildPreTokenizer(json.pre_tokenizer as never);
    this.ignoreMerges = model.ignore_merges === true;

    let maxId = -1;
    for (const [text, id] of Object.entries(model.vocab)) {
      if (!Number.isInteger(id) || id < 0)
        throw new TokenizerError(`bad vocab id ${id} for ${JSON.stringify(text)}`);
      this.vocab.set(text, id);
      this.tokenText[id] = text;
      maxId = Math.max(maxId, id);
    }
    for (const token of json.added_tokens ?? []) {
      this.added.set(token.id, token);
      this.tokenText[token.id] = token.content;
      this.specialByText.set(token.content, token.id);
      maxId = Math.max(maxId, token.id);
    }
    this.vocabSize = maxId + 1;
    this.pairBase = this.vocabSize;
    this.unkId = model.unk_token ? this.vocab.get(model.unk_token) : undefined;

    this.mergedId = new Int32Array(model.merges.length);
    model.merges.forEach((merge, rank) => {
      const [left, right] = typeof merge === 'string' ? splitMerge(merge) : merge;
      const a = this.vocab.get(left);
      const b = this.vocab.get(right);
      const merged = this.vocab.get(left + right);
      if (a === undefined || b === undefined || merged === undefined) {
        throw new TokenizerError(
          `merge ${JSON.stringify(merge)} refers to tokens missing from the vocabulary`,
        );
      }
      const key = a * this.pairBase + b;
      if (!this.mergeRank.has(key)) this.mergeRank.set(key, rank);
      this.mergedId[rank] = merged;
    });

    // Non-special added tokens are matched in text, longest first (one alternation, one pass).
    const matchable = [...this.added.values()].filter((t) => !t.special && t.content.length > 0);
    matchable.sort((x, y) => y.content.length - x.content.length);
    this.addedByContent = new Map(matchable.map((t) => [t.content, t]));
    this.addedPattern =
      matchable.length === 0
        ? undefined
        : new RegExp(matchable.map((t) => t.content.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'gu');
    const eosText = options.eosToken ?? USUAL_EOS.find((t) => this.specialByText.has(t));
    this.eosTokenId = eosText === undefined ? undefined : this.specialByText.get(eosText);
    const bosText =
      options.bosToken === undefined ? templatePrefixToken(json.post_processor) : options.bosToken;
    this.bosTokenId = bosText == null ? undefined : this.specialByText.get(bosText);
  }

  encode(text: string): number[] {
    const ids: number[] = [];
    for (const segment of this.splitAdded(text)) {
      if (typeof segment === 'number') {
        ids.push(segment);
        continue;
      }
      for (const word of this.preTokenize([this.normalize(segment)])) {
        for (const id of this.encodeWord(word)) ids.push(id);
      }
    }
    return ids;
  }

  decode(ids: readonly number[], options?: DecodeOptions): string {
    const chunks: Uint8Array[] = [];
    let length = 0;
    for (const id of ids) {
      if (options?.skipSpecialTokens && this.isSpecial(id)) continue;
      const bytes = this.tokenBytes(id);
      if (bytes === undefined) throw new TokenizerError(`token id ${id} is outside the vocabulary`);
      chunks.push(bytes);
      length += bytes.length;
    }
    const joined = new Uint8Array(length);
    let offset = 0;
    for (const chunk of chunks) {
      joined.set(chunk, offset);
      offset += chunk.length;
    }
    return new TextDecoder().decode(joined);
  }

  tokenBytes(id: number): Uint8Array | undefined {
    const text = this.tokenText[id];
    if (text === undefined) return undefined;
    const added = this.added.get(id);
    if (added) return utf8.encode(added.content);
    const bytes = new Uint8Array(text.length);
    let n = 0;
    for (const char of text) {
      const byte = CHAR_TO_BYTE.get(char);
      if (byte === undefined) return utf8.encode(text); // not a byte-level token: its text as is
      bytes[n++] = byte;
    }
    return bytes.subarray(0, n);
  }

  specialTokenId(text: string): number | undefined {
    return this.specialByText.get(text);
  }

  isSpecial(id: number): boolean {
    return this.added.get(id)?.special === true;
  }

  /** Splits text on non-special added tokens (honouring lstrip / rstrip); ids stand for matches. One pass. */
  private splitAdded(text: string): (string | number)[] {
    if (!this.addedPattern) return [text];
    const out: (string | number)[] = [];
    let last = 0;
    let stripNext = false;
    for (const match of text.matchAll(this.addedPattern)) {
      const token = this.addedByContent.get(match[0])!;
      let before = text.slice(last, match.index);
      if (stripNext) before = before.trimStart();
      if (token.lstrip) before = before.trimEnd();
      if (before) out.push(before);
      out.push(token.id);
      last = (match.index ?? 0) + match[0].length;
      stripNext = token.rstrip === true;
    }
    let rest = text.slice(last);
    if (stripNext) rest = rest.trimStart();
    if (rest) out.push(rest);
    return out;
  }

  private encodeWord(word: string): readonly number[] {
    const cached = this.wordCache.get(word);
    if (cached) return cached;
    const whole = this.ignoreMerges ? this.vocab.get(word) : undefined;
    const ids = whole !== undefined ? [whole] : this.bpe(word);
    if (this.wordCache.size >= WORD_CACHE_LIMIT) this.wordCache.clear();
    this.wordCache.set(word, ids);
    return ids;
  }

  /**
   * Repeatedly merges the lowest-ranked adjacent pair (every occurrence of it, left to right);
   * long words go through the O(n log n) heap instead, with the same result.
   */
  private bpe(word: string): number[] {
    let symbols: number[] = [];
    for (const char of word) {
      const id = this.vocab.get(char) ?? this.unkId;
      if (id === undefined)
        throw new TokenizerError(`character ${JSON.stringify(char)} is not in the vocabulary`);
      symbols.push(id);
    }
    if (symbols.length > LONG_WORD) {
      return mergeByRank(
        symbols,
        (a, b) => this.mergeRank.get(a * this.pairBase + b) ?? Number.POSITIVE_INFINITY,
        (rank) => this.mergedId[rank],
      );
    }
    while (symbols.length > 1) {
      let best = -1;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = this.mergeRank.get(symbols[i] * this.pairBase + symbols[i + 1]);
        if (rank !== undefined && (best < 0 || rank < best)) best = rank;
      }
      if (best < 0) break;
      const merged = this.mergedId[best];
      const next: number[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (
          i + 1 < symbols.length &&
          this.mergeRank.get(symbols[i] * this.pairBase + symbols[i + 1]) === best
        ) {
          next.push(merged);
          i++;
        } else {
          next.push(symbols[i]);
        }
      }
      symbols = next;
    }
    return symbols;
  }
}

/**
 * The special token a TemplateProcessing post-processor (possibly inside a Sequence) writes before
 * the text of a single sequence, e.g. Llama 3's `<|begin_of_text|>`.
 */
function templatePrefixToken(config: Record<string, unknown> | null | undefined): string | undefined {
  if (!config) return undefined;
  if (config.type === 'Sequence') {
    for (const step of (config.processors as Record<string, unknown>[] | undefined) ?? []) {
      const token = templatePrefixToken(step);
      if (token !== undefined) return token;
    }
    return undefined;
  }
  if (config.type !== 'TemplateProcessing') return undefined;
  const first = (config.single as { SpecialToken?: { id?: string } }[] | undefined)?.[0];
  return first?.SpecialToken?.id;
}

function splitMerge(merge: string): [string, string] {
  const space = merge.indexOf(' ', 1);
  if (space < 0) throw new TokenizerError(`malformed merge ${JSON.stringify(merge)}`);
  return [merge.slice(0, space), merge.slice(space + 1)];
}

/** Loads `path` (a tokenizer.json); reads the eos token from tokenizer_config.json beside it if there is one. */
export async function loadHfTokenizer(
  path: string,
  options: HfTokenizerOptions = {},
): Promise<HfBpeTokenizer> {
  let json: TokenizerJson;
  try {
    json = JSON.parse(await readFile(path, 'utf8')) as TokenizerJson;
  } catch (error) {
    throw new TokenizerError(`cannot read tokenizer ${path}: ${(error as Error).message}`);
  }
  let eosToken = options.eosToken;
  if (eosToken === undefined) {
    try {
      const config = JSON.parse(await readFile(join(dirname(path), 'tokenizer_config.json'), 'utf8')) as {
        eos_token?: string | { content?: string };
      };
      eosToken = typeof config.eos_token === 'string' ? config.eos_token : config.eos_token?.content;
    } catch {
      // no tokenizer_config.json: fall back to the usual names
    }
  }
  return new HfBpeTokenizer(json, {
    name: options.name ?? path,
    ...(eosToken !== undefined ? { eosToken } : {}),
  });
}
