import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/routing/random.ts';
import { CostSelector, routingCost } from '../../src/routing/selection.ts';

const noTrees = () => 0;

describe('cost and selection', () => {
  it("Dynamo's documented example: (2,8,10), (5,5,5), (8,2,9) cost 18, 10, 11 and the second wins", () => {
    // (cached, prefill, decode) blocks; weight 1.
    const workers = [
      [2, 8, 10],
      [5, 5, 5],
      [8, 2, 9],
    ];
    const costs = Float64Array.from(workers.map(([, prefill, decode]) => routingCost(1, prefill, decode)));
    expect([...costs]).toEqual([18, 10, 11]);
    expect(new CostSelector(seededRandom(1)).select(costs, 3, 0, noTrees)).toBe(1);
  });

  it('breaks cost ties by the smaller tree, then at random among equal trees', () => {
    const selector = new CostSelector(seededRandom(7));
    const costs = Float64Array.of(5, 3, 3, 3);
    const trees = [0, 9, 4, 6];
    expect(selector.select(costs, 4, 0, (i) => trees[i])).toBe(2);

    const seen = new Set<number>();
    const equalTrees = [0, 4, 4, 9];
    for (let i = 0; i < 200; i++) seen.add(selector.select(costs, 4, 0, (c) => equalTrees[c]));
    expect([...seen].sort()).toEqual([1, 2]);
  });

  it('asks tree sizes only for candidates tied at the lowest cost', () => {
    const asked: number[] = [];
    new CostSelector(seededRandom(1)).select(Float64Array.of(4, 2, 9, 2), 4, 0, (i) => {
      asked.push(i);
      return 0;
    });
    expect(asked.sort()).toEqual([1, 3]);
  });

  it('temperature > 0: 10,000 draws follow the softmax of range-normalised costs (chi-square)', () => {
    const costs = Float64Array.of(10, 12, 15, 11, 10.5);
    const temperature = 0.4;
    const min = Math.min(...costs);
    const max = Math.max(...costs);
    const raw = [...costs].map((c) => Math.exp(-(c / (max - min)) / temperature));
    const total = raw.reduce((a, b) => a + b, 0);
    const expected = raw.map((w) => w / total);

    const draws = 10_000;
    const counts = new Array(costs.length).fill(0);
    const selector = new CostSelector(seededRandom(12345));
    for (let i = 0; i < draws; i++) counts[selector.select(costs, costs.length, temperature, noTrees)]++;

    const chiSquare = (probabilities: number[]) =>
      counts.reduce((sum, observed, i) => {
        const e = probabilities[i] * draws;
        return sum + (observed - e) ** 2 / e;
      }, 0);
    // df = 4; the 0.999 quantile is 18.47.
    expect(chiSquare(expected)).toBeLessThan(18.47);
    // The bound has teeth: a uniform pick (or an argmin) is far outside it.
    expect(chiSquare(new Array(costs.length).fill(1 / costs.length))).toBeGreaterThan(100);
    // The cheapest candidates are drawn most often.
    expect(counts[0]).toBeGreaterThan(counts[2]);
  });

  it('temperature > 0 with all costs equal draws uniformly', () => {
    const selector = new CostSelector(seededRandom(3));
    const counts = [0, 0, 0];
    for (let i = 0; i < 3000; i++) counts[selector.select(Float64Array.of(4, 4, 4), 3, 1, noTrees)]++;
    for (const c of counts) expect(c).toBeGreaterThan(850);
  });
});
