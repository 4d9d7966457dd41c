import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  chatCompletionSchema,
  completionSchema,
  isSimpleBody,
  parseBody,
} from '../../src/frontend/protocol.ts';

/** Values near and across every simple field's limits, of every JSON type. */
const anyValue = fc.oneof(
  fc.constantFrom(
    null,
    undefined,
    true,
    false,
    0,
    1,
    2,
    -1,
    0.5,
    1.5,
    2.5,
    128,
    129,
    2 ** 53,
    -(2 ** 53),
    Number.NaN,
  ),
  fc.double(),
  fc.integer(),
  fc.string({ maxLength: 4 }),
  fc.constant('x'.repeat(1025)),
  fc.constantFrom('', 'user', 'system', 'assistant', 'developer', 'tool', 'robot'),
  fc.array(fc.string({ maxLength: 2 }), { maxLength: 2 }),
  fc.dictionary(fc.constantFrom('role', 'content', 'name', 'type'), fc.string({ maxLength: 3 })),
);

/** Mostly values a simple field takes (to reach the fast path), sometimes anything. */
const mostly = (good: fc.Arbitrary<unknown>) =>
  fc.oneof({ arbitrary: good, weight: 9 }, { arbitrary: anyValue, weight: 1 });

const roles = fc.constantFrom('user', 'system', 'assistant', 'developer', 'tool', 'robot');

const message = fc.record(
  {
    role: mostly(roles),
    content: mostly(fc.oneof(fc.string({ maxLength: 3 }), fc.constant(null))),
    name: mostly(fc.string({ maxLength: 3 })),
  },
  { requiredKeys: ['role'], noNullPrototype: true },
);

const small = (min: number, max: number) => fc.integer({ min, max });
const fields = {
  model: mostly(fc.constantFrom('m', '')),
  stream: mostly(fc.boolean()),
  max_tokens: mostly(small(-1, 3)),
  max_completion_tokens: mostly(small(-1, 3)),
  n: mostly(small(0, 130)),
  seed: mostly(fc.integer()),
  temperature: mostly(fc.double({ min: -0.5, max: 2.5 })),
  top_p: mostly(fc.double({ min: -0.5, max: 1.5 })),
  stop: mostly(fc.string({ maxLength: 3 })),
  ignore_eos: mostly(fc.boolean()),
  user: mostly(fc.string({ maxLength: 3 })),
};

/** Now and then a field the fast path leaves to the schema. */
const otherField = fc.oneof(
  { arbitrary: fc.constant(null), weight: 4 },
  {
    arbitrary: fc.tuple(fc.constantFrom('logprobs', 'unknown_field', 'nvext', 'stream_options'), anyValue),
    weight: 1,
  },
);

const body = (main: 'messages' | 'prompt') =>
  fc
    .tuple(
      fc.record(fields, { requiredKeys: ['model'], noNullPrototype: true }),
      fc.record(
        {
          [main]:
            main === 'messages'
              ? mostly(fc.array(message, { minLength: 1, maxLength: 3 }))
              : mostly(fc.string({ maxLength: 5 })),
        },
        { noNullPrototype: true },
      ),
      otherField,
    )
    .map(
      ([simple, prompt, other]): Record<string, unknown> => ({
        ...simple,
        ...prompt,
        ...(other === null ? {} : { [other[0]]: other[1] }),
      }),
    );

describe('the simple-body fast path of parseBody', () => {
  for (const [name, schema, main] of [
    ['chat', chatCompletionSchema, 'messages'],
    ['completions', completionSchema, 'prompt'],
  ] as const) {
    it(`${name}: accepts only bodies the schema accepts unchanged`, () => {
      let simple = 0;
      fc.assert(
        fc.property(body(main), (value) => {
          const parsed = (schema as typeof chatCompletionSchema).safeParse(value);
          if (isSimpleBody(schema, value)) {
            simple++;
            expect(parsed.success).toBe(true);
            expect(parsed.data).toStrictEqual(value);
          }
        }),
        { numRuns: 3000 },
      );
      expect(simple).toBeGreaterThan(4); // the property did exercise the fast path
    });
  }

  it('takes the usual chat body as it is', () => {
    const value = {
      model: 'm',
      messages: [{ role: 'user', content: 'Hello!' }],
      max_tokens: 16,
      stream: false,
    };
    expect(isSimpleBody(chatCompletionSchema, value)).toBe(true);
    expect(parseBody(chatCompletionSchema, value)).toBe(value);
  });
});
