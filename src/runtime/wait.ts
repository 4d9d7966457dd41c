/** Polls a condition (shutdown paths only, never hot ones). Resolves true when it held in time. */
export async function waitUntil(condition: () => boolean, timeoutMs: number, pollMs = 10): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  return true;
}
