/**
 * Commander argument parsers of every kvgate command. A value they refuse is a usage error that
 * names the flag (or the environment variable) it came from; integers are digits only.
 */
import { InvalidArgumentError } from 'commander';

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError('expected a positive integer');
  return n;
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n))
    throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

export function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0)
    throw new InvalidArgumentError('expected a non-negative number');
  return n;
}

/** A model name as it goes in model cards and requests: no spaces or control characters. */
export function modelName(value: string): string {
  if (value.trim() === '' || value.length > 256 || /[\s\p{Cc}]/u.test(value))
    throw new InvalidArgumentError('expected a model name without spaces (at most 256 characters)');
  return value;
}

export function port(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65_535)
    throw new InvalidArgumentError('expected a TCP port in [0, 65535]');
  return n;
}

export function positiveNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0)
    throw new InvalidArgumentError('expected a positive number');
  return n;
}

export function fraction(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1)
    throw new InvalidArgumentError('expected a number in [0, 1]');
  return n;
}

export function host(value: string): string {
  if (value.trim() === '' || /\s/.test(value)) throw new InvalidArgumentError('expected a host name or IP');
  return value;
}

export function nonEmpty(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('expected a non-empty value');
  return value;
}
