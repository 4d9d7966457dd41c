/**
 * Checks a GenerateRequest at the engine's edge: every bad field gets a coded EngineError naming
 * it, nothing malformed reaches a scheduler. A hand-written loop rather than a schema: prompts are
 * thousands of tokens and this runs per request.
 */
import { isDpRank } from '../kv/events.ts';
import { type GenerateRequest, isOutputKind } from '../protocol/generate.ts';
import { EngineError } from './errors.ts';

function invalid(message: string): EngineError {
  return new EngineError('ENGINE_INVALID_REQUEST', message);
}

function isU32(value: unknown): value is number {
  return typeof value === 'number' && value >>> 0 === value;
}

export function rankOutOfRange(rank: number, size: number): EngineError {
  return new EngineError('ENGINE_RANK_OUT_OF_RANGE', `rank ${rank} out of range [0, ${size})`);
}

/**
 * Throws an EngineError for the first bad field. Token ids before `checkTokensFrom` are left to
 * the block hasher, which checks every token of the full blocks it hashes (see hashRangeError).
 */
export function validateGenerateRequest(
  request: GenerateRequest,
  dataParallelSize: number,
  checkTokensFrom = 0,
): void {
  if (request === null || typeof request !== 'object') throw invalid('request must be an object');
  if (typeof request.requestId !== 'string' || request.requestId.length === 0)
    throw invalid('requestId must be a non-empty string');
  const tokens = request.tokenIds as unknown;
  // A Uint32Array (trace replay) holds valid token ids by construction.
  if (tokens instanceof Uint32Array) {
    if (tokens.length === 0) throw invalid('tokenIds must not be empty');
  } else {
    if (!Array.isArray(tokens) || tokens.length === 0) throw invalid('tokenIds must be a non-empty array');
    for (let i = checkTokensFrom; i < tokens.length; i++)
      if (!isU32(tokens[i]))
        throw invalid(`tokenIds[${i}] is not an integer token id in [0, 2^32): ${String(tokens[i])}`);
  }
  const sampling = request.sampling as GenerateRequest['sampling'] | undefined;
  if (sampling === null || typeof sampling !== 'object') throw invalid('sampling must be an object');
  const { maxTokens, stopTokenIds, seed, ignoreEos, outputKind } = sampling;
  if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens) || maxTokens < 1)
    throw invalid(`sampling.maxTokens must be an integer >= 1, got ${String(maxTokens)}`);
  if (stopTokenIds !== undefined) {
    if (!Array.isArray(stopTokenIds)) throw invalid('sampling.stopTokenIds must be an array');
    for (let i = 0; i < stopTokenIds.length; i++)
      if (!isU32(stopTokenIds[i])) throw invalid(`sampling.stopTokenIds[${i}] is not a token id`);
  }
  if (seed !== undefined && !(Number.isSafeInteger(seed) && seed >= 0))
    throw invalid(`sampling.seed must be a non-negative safe integer, got ${String(seed)}`);
  if (ignoreEos !== undefined && typeof ignoreEos !== 'boolean')
    throw invalid('sampling.ignoreEos must be a boolean');
  if (outputKind !== undefined && !isOutputKind(outputKind))
    throw invalid(`sampling.outputKind must be 'delta' or 'final', got ${String(outputKind)}`);
  if (request.dpRank !== undefined) {
    if (typeof request.dpRank !== 'number' || !Number.isInteger(request.dpRank))
      throw invalid(`dpRank must be an integer, got ${String(request.dpRank)}`);
    if (request.dpRank < 0 || request.dpRank >= dataParallelSize)
      throw rankOutOfRange(request.dpRank, dataParallelSize);
  }
  const bootstrap = request.bootstrap;
  if (bootstrap !== undefined) {
    if (bootstrap === null || typeof bootstrap !== 'object') throw invalid('bootstrap must be an object');
    if (typeof bootstrap.host !== 'string') throw invalid('bootstrap.host must be a string');
    if (!Number.isInteger(bootstrap.port) || bootstrap.port < 0 || bootstrap.port > 65535)
      throw invalid('bootstrap.port must be a port number');
    if (!(Number.isSafeInteger(bootstrap.room) && bootstrap.room >= 0))
      throw invalid('bootstrap.room must be a non-negative safe integer');
    if (typeof bootstrap.prefillWorkerId !== 'bigint' || bootstrap.prefillWorkerId < 0n)
      throw invalid('bootstrap.prefillWorkerId must be a u64 bigint');
    if (!isDpRank(bootstrap.prefillDpRank)) throw invalid('bootstrap.prefillDpRank must be a rank');
  }
}

/** The block hasher's RangeError for a bad token, as the engine's coded error. */
export function hashRangeError(error: RangeError): EngineError {
  return invalid(`tokenIds: ${error.message}`);
}
