/** Assembles src/tokens/wasm/xxh3.wat into build/xxh3.wasm (run by `npm run build:wasm` and `prepare`). */
import {
  assembleWat,
  readXxh3Wat,
  writeCachedWasm,
  XXH3_WASM_PATH,
  XXH3_WAT_PATH,
} from '../src/tokens/wasm/assemble.ts';
import { wasmApi } from '../src/tokens/wasm/webassembly.ts';

const source = readXxh3Wat();
const binary = await assembleWat(source, XXH3_WAT_PATH);
// Compiling here catches a module that wabt accepts but this Node's engine rejects.
new wasmApi.Module(binary);
writeCachedWasm(source, binary);
console.log(`wrote ${XXH3_WASM_PATH} (${binary.length} bytes)`);
