import { describe, expect, it } from 'vitest';
import type { GenerateChunk, GenerateRequest } from '../../src/protocol/generate.ts';
import {
  decodeGenerateChunk,
  decodeGenerateRequest,
  encodeGenerateChunk,
  encodeGenerateRequest,
  generateChunkFromWire,
  generateChunkToWire,
  generateRequestFromValue,
  generateRequestFromWire,
  generateRequestToWire,
} from '../../src/protocol/wire.ts';
import { decodeJson, encodeJson } from '../../src/runtime/codec.ts';

const roundTrip = (value: unknown): unknown => decodeJson(encodeJson(value));

describe('generate wire protocol', () => {
  it('round-trips a decode request with bootstrap info, keeping rank 0 and a u64 worker id', () => {
    const request: GenerateRequest = {
      requestId: 'r1',
      tokenIds: [1, 2, 3],
      sampling: { maxTokens: 4, ignoreEos: true, seed: 7 },
      dpRank: 0,
      bootstrap: {
        host: 'h',
        port: 9,
        room: 2 ** 53 - 1,
        prefillWorkerId: 18446744073709551615n,
        prefillDpRank: 0,
      },
    };
    const back = generateRequestFromWire(roundTrip(generateRequestToWire(request)));
    expect(back).toEqual({ ok: true, value: request });
  });

  it('round-trips chunks and rejects malformed ones with a message', () => {
    const chunk: GenerateChunk = {
      tokenIds: [5],
      finishReason: 'length',
      usage: { promptTokens: 3, completionTokens: 1, cachedTokens: 0 },
      dpRank: 0,
    };
    expect(generateChunkFromWire(roundTrip(generateChunkToWire(chunk)))).toEqual({ ok: true, value: chunk });
    const bad = generateChunkFromWire({ token_ids: [-1] });
    expect(bad.ok).toBe(false);
  });

  it('writes chunk frames by hand exactly as the generic JSON encoder does, and reads them back', () => {
    const chunks: GenerateChunk[] = [
      { tokenIds: [] },
      { tokenIds: [0, 4_294_967_295], dpRank: 0 },
      {
        tokenIds: [7],
        finishReason: 'stop',
        usage: { promptTokens: 12, completionTokens: 3, cachedTokens: 0 },
        dpRank: 3,
      },
      { tokenIds: [], finishReason: 'error', error: 'engine said "no" – ünïcode\n' },
      {
        tokenIds: [],
        dpRank: 1,
        bootstrap: { host: 'h', port: 1, room: 5, prefillWorkerId: 2n ** 64n - 1n, prefillDpRank: 1 },
      },
    ];
    for (const chunk of chunks) {
      const frame = encodeGenerateChunk(chunk);
      expect(new TextDecoder().decode(frame)).toBe(
        new TextDecoder().decode(encodeJson(generateChunkToWire(chunk))),
      );
      // In process (the frame carries its chunk) and from plain bytes (another process).
      expect(decodeGenerateChunk(frame)).toEqual({ ok: true, value: chunk });
      expect(decodeGenerateChunk(Uint8Array.from(frame))).toEqual({ ok: true, value: chunk });
    }
    // The receiver gets its own copy, never the sender's arrays.
    const sent: GenerateChunk = { tokenIds: [1, 2] };
    const received = decodeGenerateChunk(encodeGenerateChunk(sent));
    if (!received.ok) throw new Error(received.error);
    expect(received.value.tokenIds).toEqual(sent.tokenIds);
    expect(received.value.tokenIds).not.toBe(sent.tokenIds);
    // Values no JSON writer may emit fall back to the generic encoder (and fail validation on arrival).
    const odd = encodeGenerateChunk({ tokenIds: [1.5] });
    expect(decodeGenerateChunk(odd).ok).toBe(false);
  });

  it('writes request frames by hand exactly as the generic JSON encoder does, and reads them back', () => {
    const requests: GenerateRequest[] = [
      { requestId: 'r', tokenIds: [1], sampling: { maxTokens: 1 } },
      {
        requestId: 'ünï "q"\u0001',
        tokenIds: [0, 4_294_967_295, 7],
        sampling: { maxTokens: 16, ignoreEos: false, stopTokenIds: [3, 4], temperature: 0.7, seed: -12 },
        dpRank: 0,
      },
      { requestId: 'x', tokenIds: [5], sampling: { maxTokens: 2, stopTokenIds: [] }, dpRank: 3 },
      { requestId: 'f', tokenIds: [5], sampling: { maxTokens: 9, outputKind: 'final' } },
      { requestId: 'e', tokenIds: [5], sampling: { maxTokens: 9, outputKind: 'delta', seed: 1 }, dpRank: 0 },
      {
        requestId: 'd',
        tokenIds: [1, 2],
        sampling: { maxTokens: 2 },
        dpRank: 1,
        bootstrap: { host: 'h', port: 1, room: 9, prefillWorkerId: 2n ** 64n - 1n, prefillDpRank: 0 },
      },
    ];
    for (const request of requests) {
      const frame = encodeGenerateRequest(request);
      expect(new TextDecoder().decode(frame)).toBe(
        new TextDecoder().decode(encodeJson(generateRequestToWire(request))),
      );
      expect(decodeGenerateRequest(frame)).toEqual({ ok: true, value: request });
    }
    // An invalid request is refused on arrival, however its frame was written.
    expect(decodeGenerateRequest(encodeGenerateRequest({ ...requests[1], tokenIds: [] })).ok).toBe(false);
  });

  it('takes a request handed over in process as its bytes would be taken, as a copy', () => {
    const sent: GenerateRequest = {
      requestId: 'v',
      tokenIds: [1, 2, 3],
      sampling: { maxTokens: 4, stopTokenIds: [9], seed: 5, outputKind: 'final' },
      dpRank: 2,
    };
    const received = generateRequestFromValue(sent);
    expect(received).toEqual(sent);
    expect(received?.tokenIds).not.toBe(sent.tokenIds);
    expect(received?.sampling.stopTokenIds).not.toBe(sent.sampling.stopTokenIds);
    // Not taken as a value (the plane hands over the bytes instead): bootstrap info, a bad shape.
    const bootstrap = { host: 'h', port: 1, room: 9, prefillWorkerId: 1n, prefillDpRank: 0 };
    expect(generateRequestFromValue({ ...sent, bootstrap })).toBeUndefined();
    expect(generateRequestFromValue({ ...sent, tokenIds: [] })).toBeUndefined();
    expect(generateRequestFromValue({ ...sent, sampling: undefined })).toBeUndefined();
    expect(
      generateRequestFromValue({ ...sent, sampling: { maxTokens: 4, outputKind: 'all' } }),
    ).toBeUndefined();
    expect(generateRequestFromValue('not a request')).toBeUndefined();
  });

  it('rejects bad requests: empty prompt, negative rank, fractional tokens, missing sampling, unknown output kind', () => {
    const base = generateRequestToWire({ requestId: 'x', tokenIds: [1], sampling: { maxTokens: 1 } });
    for (const broken of [
      { ...base, token_ids: [] },
      { ...base, dp_rank: -1 },
      { ...base, token_ids: [1.5] },
      { request_id: 'x', token_ids: [1] },
      { ...base, sampling: { max_tokens: 0 } },
      { ...base, sampling: { max_tokens: 1, output_kind: 'cumulative' } },
      { ...base, sampling: { max_tokens: 1, output_kind: 1 } },
    ])
      expect(generateRequestFromWire(broken).ok).toBe(false);
  });
});
