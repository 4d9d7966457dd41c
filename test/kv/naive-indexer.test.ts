import { describe, expect, it } from 'vitest';
import { NaiveIndexer } from '../../src/kv/naive-indexer.ts';
import { OwnerTable } from '../../src/kv/owners.ts';
import { matches, runIndexerConformance, storedEvent } from './indexer.conformance.ts';

runIndexerConformance('NaiveIndexer', () => new NaiveIndexer());

describe('NaiveIndexer', () => {
  it('interns owners in a shared table and leaves it to its creator on removeWorker', () => {
    const owners = new OwnerTable();
    const indexer = new NaiveIndexer({ owners });
    expect(indexer.apply(storedEvent(5n, 2, [1]))).toBeNull();
    const owner = owners.find(5n, 2);
    expect(owner).toBeGreaterThanOrEqual(0);
    indexer.removeWorker(5n);
    expect(owners.find(5n, 2)).toBe(owner);
    expect(matches(indexer, [1])).toEqual({});
  });

  it('releases owners of a private table on removeWorker', () => {
    const indexer = new NaiveIndexer();
    expect(indexer.apply(storedEvent(5n, 2, [1]))).toBeNull();
    indexer.removeWorker(5n);
    expect(indexer.owners.find(5n, 2)).toBe(-1);
  });

  it('frees tree positions nobody holds', () => {
    const indexer = new NaiveIndexer();
    expect(indexer.apply(storedEvent(1n, 0, [1, 2, 3]))).toBeNull();
    expect(indexer.stats().nodes).toBe(3);
    indexer.removeWorker(1n);
    expect(indexer.stats().nodes).toBe(0);
    expect(indexer.size).toBe(0);
  });

  it('grows its reused result for many owners', () => {
    const indexer = new NaiveIndexer();
    for (let w = 0; w < 50; w++) expect(indexer.apply(storedEvent(BigInt(w), w % 3, [1, 2]))).toBeNull();
    const record = matches(indexer, [1, 2]);
    expect(Object.keys(record)).toHaveLength(50);
    expect(record['49:1']).toEqual({ blocks: 2, treeSize: 2 });
  });
});
