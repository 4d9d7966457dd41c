/**
 * The small part of the WebAssembly JS API that the kernel loader uses, typed locally: the
 * project compiles against lib ES2023 + @types/node, which do not declare WebAssembly's classes.
 */

export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}

interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports?: Record<string, unknown>) => WasmInstance;
}

export const wasmApi = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
