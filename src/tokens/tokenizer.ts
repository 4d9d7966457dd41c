/**
 * The tokenizer contract used by the frontend, and the default implementation: OpenAI's o200k_base
 * byte-level BPE from the installed `gpt-tokenizer` package (its ranks ship inside the package;
 * nothing is downloaded). A Hugging Face `tokenizer.json` can be loaded instead (hf-tokenizer.ts).
 *
 * `encode` always treats its input as ordinary text: a special-token string typed by a user (for
 * example `<|im_start|>`) is encoded as the characters it is made of, never as the special token,
 * so message content cannot forge template structure. Templates insert special tokens by id.
 */
import { RankBpe } from './tokenizer-bpe.ts';
import { isO200kSplitRegex, O200kSplitter } from './tokenizer-o200k-split.ts';

export interface DecodeOptions {
  /** Drop special tokens (end-of-text, template markers) from the output. Default false. */
  readonly skipSpecialTokens?: boolean;
}

export interface Tokenizer {
  /** A short name for logs and metrics, e.g. `o200k_base` or the tokenizer.json path. */
  readonly name: string;
  /** Every id this tokenizer produces is below this bound. */
  readonly vocabSize: number;
  /** End-of-sequence token, when the vocabulary has one. */
  readonly eosTokenId?: number;
  /**
   * Beginning-of-sequence token the model expects in front of a raw text prompt (Llama's
   * `<|begin_of_text|>`); absent when the model adds none. Chat templates write their own.
   */
  readonly bosTokenId?: number;
  /** Encodes `text` as ordinary text (special-token strings are not interpreted). */
  encode(text: string): number[];
  decode(ids: readonly number[], options?: DecodeOptions): string;
  /**
   * The raw bytes one token stands for (UTF-8 of the text for special and added tokens), or
   * undefined for an id outside the vocabulary. Byte-level tokens may hold part of a UTF-8
   * character; the incremental detokenizer joins them.
   */
  tokenBytes(id: number): Uint8Array | undefined;
  /** The id of a special (or added) token given its exact text, e.g. `<|im_start|>`. */
  specialTokenId(text: string): number | undefined;
  isSpecial(id: number): boolean;
}

export class TokenizerError extends Error {
  override readonly name = 'TokenizerError';
}

type RankEntry = string | readonly number[];

interface GptEncodingApi {
  encode(
    text: string,
    options?: { allowedSpecial?: Set<string> | 'all'; disallowedSpecial?: Set<string> | 'all' },
  ): number[];
  decode(ids: Iterable<number>): string;
  vocabularySize: number;
}

/** The special tokens of o200k_base as gpt-tokenizer defines them (ChatML markers included). */
const O200K_SPECIAL_TOKENS = [
  '<|endoftext|>',
  '<|fim_prefix|>',
  '<|fim_middle|>',
  '<|fim_suffix|>',
  '<|im_start|>',
  '<|im_end|>',
  '<|im_sep|>',
  '<|endofprompt|>',
] as const;

const utf8 = new TextEncoder();

const PIECE_CACHE_LIMIT = 100_000;
const PIECE_CACHE_MAX_LENGTH = 64;

/**
 * o200k_base: the ranks, pre-tokenizer regex and special tokens of gpt-tokenizer, with our own
 * merge loop (tokenizer-bpe.ts, tiktoken's semantics in O(n log n); gpt-tokenizer's is quadratic
 * in the length of a piece). Decoding is gpt-tokenizer's. Build it with `loadO200kTokenizer()`.
 */
export class GptTokenizer implements Tokenizer {
  readonly name: string;
  readonly vocabSize: number;
  readonly eosTokenId: number | undefined;
  private readonly specialByText = new Map<string, number>();
  private readonly specialById = new Map<number, Uint8Array>();
  private readonly bytesCache = new Map<number, Uint8Array>();
  private readonly bpe: RankBpe;
  private readonly pieceCache = new Map<string, readonly number[]>();
  /** The hand-written ASCII scan of the o200k split regex, when splitRegex is that regex. */
  private readonly splitter: O200kSplitter | undefined;

  constructor(
    name: string,
    private readonly api: GptEncodingApi,
    private readonly ranks: readonly RankEntry[],
    specialTokens: readonly string[],
    private readonly splitRegex: RegExp,
  ) {
    this.name = name;
    this.splitter = isO200kSplitRegex(splitRegex) ? new O200kSplitter(splitRegex) : undefined;
    const byBytes = new Map<string, number>();
    ranks.forEach((entry, rank) => {
      byBytes.set(
        Buffer.from(typeof entry === 'string' ? entry : Uint8Array.from(entry)).toString('latin1'),
        rank,
      );
    });
    this.bpe = new RankBpe(byBytes);
    for (const text of specialTokens) {
      const ids = api.encode(text, { allowedSpecial: 'all' });
      if (ids.length === 1) {
        this.specialByText.set(text, ids[0]);
        this.specialById.set(ids[0], utf8.encode(text));
      }
    }
    let maxSpecial = -1;
    for (const id of this.specialById.keys()) maxSpecial = Math.max(maxSpecial, id);
    this.vocabSize = Math.max(ranks.length, maxSpecial + 1);
    this.eosTokenId = this.specialByText.get('<|endoftext|>');
  }

  encode(text: string): number[] {
    const ids: number[] = [];
    const splitter = this.splitter;
    if (splitter === undefined) {
      for (const [piece] of text.matchAll(this.splitRegex)) this.encodePiece(piece, false, ids);
      return ids;
    }
    for (let start = 0; start < text.length; ) {
      const end = splitter.pieceEnd(text, start);
      this.encodePiece(text.slice(start, end), splitter.lastPieceAscii, ids);
      start = end;
    }
    return ids;
  }

  /** Appends the ids of one pre-tokenized piece (an ASCII piece's chars are its latin1 bytes). */
  private encodePiece(piece: string, ascii: boolean, ids: number[]): void {
    let pieceIds = this.pieceCache.get(piece);
    if (pieceIds === undefined) {
      pieceIds = this.bpe.encodePiece(ascii ? piece : Buffer.from(piece, 'utf8').toString('latin1'));
      if (piece.length <= PIECE_CACHE_MAX_LENGTH) {
        if (this.pieceCache.size >= PIECE_CACHE_LIMIT) this.pieceCache.clear();
        this.pieceCache.set(piece, pieceIds);
      }
    }
    for (let i = 0; i < pieceIds.length; i++) ids.push(pieceIds[i]);
  }

  decode(ids: readonly number[], options?: DecodeOptions): string {
    const kept = options?.skipSpecialTokens ? ids.filter((id) => !this.specialById.has(id)) : ids;
    for (const id of kept) {
      if (this.tokenBytes(id) === undefined)
        throw new TokenizerError(`token id ${id} is outside the vocabulary`);
    }
    return this.api.decode(kept);
  }

  tokenBytes(id: number): Uint8Array | undefined {
    const special = this.specialById.get(id);
    if (special) return special;
    if (!Number.isInteger(id) || id < 0 || id >= this.ranks.length) return undefined;
    const cached = this.bytesCache.get(id);
    if (cached) return cached;
    const entry = this.ranks[id];
    if (entry === undefined) return undefined;
    const bytes = typeof entry === 'string' ? utf8.encode(entry) : Uint8Array.from(entry);
    if (this.bytesCache.size < 65_536) this.bytesCache.set(id, bytes);
    return bytes;
  }

  specialTokenId(text: string): number | undefined {
    return this.specialByText.get(text);
  }

  isSpecial(id: number): boolean {
    return this.specialById.has(id);
  }
}

let o200k: Promise<Tokenizer> | undefined;

/**
 * The default tokenizer, loaded once per process. The import is dynamic so that modules which only
 * need the types do not pay the ~0.3 s it takes to load the 200k ranks.
 */
export function loadO200kTokenizer(): Promise<Tokenizer> {
  o200k ??= (async () => {
    const [encoding, ranks, constants] = await Promise.all([
      import('gpt-tokenizer/encoding/o200k_base'),
      import('gpt-tokenizer/bpeRanks/o200k_base'),
      import('gpt-tokenizer/encodingParams/constants'),
    ]);
    return new GptTokenizer(
      'o200k_base',
      encoding.default,
      ranks.default,
      O200K_SPECIAL_TOKENS,
      constants.O200K_TOKEN_SPLIT_REGEX,
    );
  })();
  return o200k;
}

export interface TokenizerSpec {
  /** Path of a Hugging Face tokenizer.json; absent = o200k_base. */
  readonly tokenizerJsonPath?: string;
}

/** Loads the tokenizer a model card or CLI flag names. */
export async function loadTokenizer(spec: TokenizerSpec = {}): Promise<Tokenizer> {
  if (spec.tokenizerJsonPath === undefined) return loadO200kTokenizer();
  const { loadHfTokenizer } = await import('./hf-tokenizer.ts');
  return loadHfTokenizer(spec.tokenizerJsonPath);
}
