/**
 * Optional bearer-token API keys. Keys are compared as SHA-256 digests with
 * `crypto.timingSafeEqual` (equal lengths by construction) against every configured key, so the
 * time taken says nothing about how much of a key matched or which key it was.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { ApiError } from './errors.ts';

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

export class ApiKeyChecker {
  private readonly digests: readonly Buffer[];

  constructor(keys: readonly string[]) {
    this.digests = keys.filter((k) => k.length > 0).map(digest);
  }

  get enabled(): boolean {
    return this.digests.length > 0;
  }

  /** Throws a 401 OpenAI error unless the Authorization header carries a configured key. */
  check(authorization: string | undefined): void {
    if (!this.enabled) return;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!match) {
      throw new ApiError(
        "You didn't provide an API key. Provide it in an Authorization header: 'Authorization: Bearer YOUR_KEY'.",
        { status: 401, type: 'invalid_request_error', code: 'missing_api_key' },
      );
    }
    const given = digest(match[1]);
    let ok = false;
    for (const key of this.digests) ok = timingSafeEqual(given, key) || ok;
    if (!ok) {
      throw new ApiError('Incorrect API key provided.', {
        status: 401,
        type: 'invalid_request_error',
        code: 'invalid_api_key',
      });
    }
  }
}
