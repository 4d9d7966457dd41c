;; XXH3-64 kernel for KV block hashing (bit-exact with xxhash.h XXH3_64bits_withSeed).
;;
;; Assembled by scripts/build-wasm.ts (or in-process by src/tokens/xxh3-wasm.ts) with the wabt npm
;; package. The readable reference for every path is src/tokens/xxh3.ts.
;;
;; Memory layout (bytes):
;;   [0, 192)     XXH3_kSecret
;;   [192, 384)   custom secret derived from the seed (long inputs only, rebuilt per call)
;;   [384, 448)   the 8 accumulators of the long-input path
;;   [1024, ...)  caller data: token blocks in, packed u64 hashes out (managed by the JS side)
;;
;; A u64 seed crosses the JS boundary as two i32 halves so the hot path never makes a BigInt.
;; wasm has no 64x64->128 multiply: $mulfold builds the high word from four 32x32->64 products.
(module
  (memory (export "memory") 1)

  (data (i32.const 0)
    "\b8\fe\6c\39\23\a4\4b\be\7c\01\81\2c\f7\21\ad\1c"
    "\de\d4\6d\e9\83\90\97\db\72\40\a4\a4\b7\b3\67\1f"
    "\cb\79\e6\4e\cc\c0\e5\78\82\5a\d0\7d\cc\ff\72\21"
    "\b8\08\46\74\f7\43\24\8e\e0\35\90\e6\81\3a\26\4c"
    "\3c\28\52\bb\91\c3\00\cb\88\d0\65\8b\1b\53\2e\a3"
    "\71\64\48\97\a2\0d\f9\4e\38\19\ef\46\a9\de\ac\d8"
    "\a8\fa\76\3f\e3\9c\34\3f\f9\dc\bb\c7\c7\0b\4f\1d"
    "\8a\51\e0\4b\cd\b4\59\31\c8\9f\7e\c9\d9\78\73\64"
    "\ea\c5\ac\83\34\d3\eb\c3\c5\81\a0\ff\fa\13\63\eb"
    "\17\0d\dd\51\b7\f0\da\49\d3\16\55\26\29\d4\68\9e"
    "\2b\16\be\58\7d\47\a1\fc\8f\f8\b8\d1\7a\d0\31\ce"
    "\45\cb\3a\8f\95\16\04\28\af\d7\fb\ca\bb\4b\40\7e")

  (global $CUSTOM_SECRET i32 (i32.const 192))
  (global $ACC i32 (i32.const 384))

  ;; ---------------------------------------------------------------- mixing primitives

  ;; Low 64 bits XOR high 64 bits of the 128-bit product a*b.
  (func $mulfold (param $a i64) (param $b i64) (result i64)
    (local $aL i64) (local $aH i64) (local $bL i64) (local $bH i64)
    (local $ll i64) (local $lh i64) (local $cross i64)
    (local.set $aL (i64.and (local.get $a) (i64.const 0xffffffff)))
    (local.set $aH (i64.shr_u (local.get $a) (i64.const 32)))
    (local.set $bL (i64.and (local.get $b) (i64.const 0xffffffff)))
    (local.set $bH (i64.shr_u (local.get $b) (i64.const 32)))
    (local.set $ll (i64.mul (local.get $aL) (local.get $bL)))
    (local.set $lh (i64.mul (local.get $aL) (local.get $bH)))
    ;; cannot overflow: (2^32-1) + (2^32-1) + (2^32-1)^2 = 2^64-1
    (local.set $cross
      (i64.add
        (i64.add (i64.shr_u (local.get $ll) (i64.const 32)) (i64.and (local.get $lh) (i64.const 0xffffffff)))
        (i64.mul (local.get $aH) (local.get $bL))))
    (i64.xor
      ;; low word
      (i64.or (i64.shl (local.get $cross) (i64.const 32)) (i64.and (local.get $ll) (i64.const 0xffffffff)))
      ;; high word
      (i64.add
        (i64.add (i64.mul (local.get $aH) (local.get $bH)) (i64.shr_u (local.get $lh) (i64.const 32)))
        (i64.shr_u (local.get $cross) (i64.const 32)))))

  (func $xxh64_avalanche (param $h i64) (result i64)
    (local.set $h (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 33))))
    (local.set $h (i64.mul (local.get $h) (i64.const 0xC2B2AE3D27D4EB4F)))
    (local.set $h (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 29))))
    (local.set $h (i64.mul (local.get $h) (i64.const 0x165667B19E3779F9)))
    (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 32))))

  (func $avalanche (param $h i64) (result i64)
    (local.set $h (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 37))))
    (local.set $h (i64.mul (local.get $h) (i64.const 0x165667919E3779F9)))
    (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 32))))

  (func $rrmxmx (param $h i64) (param $len i64) (result i64)
    (local.set $h
      (i64.xor (local.get $h)
        (i64.xor (i64.rotl (local.get $h) (i64.const 49)) (i64.rotl (local.get $h) (i64.const 24)))))
    (local.set $h (i64.mul (local.get $h) (i64.const 0x9FB21C651E98DF25)))
    (local.set $h
      (i64.xor (local.get $h) (i64.add (i64.shr_u (local.get $h) (i64.const 35)) (local.get $len))))
    (local.set $h (i64.mul (local.get $h) (i64.const 0x9FB21C651E98DF25)))
    (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 28))))

  (func $swap64 (param $x i64) (result i64)
    (i64.or
      (i64.or
        (i64.or
          (i64.shl (local.get $x) (i64.const 56))
          (i64.shl (i64.and (local.get $x) (i64.const 0xff00)) (i64.const 40)))
        (i64.or
          (i64.shl (i64.and (local.get $x) (i64.const 0xff0000)) (i64.const 24))
          (i64.shl (i64.and (local.get $x) (i64.const 0xff000000)) (i64.const 8))))
      (i64.or
        (i64.or
          (i64.and (i64.shr_u (local.get $x) (i64.const 8)) (i64.const 0xff000000))
          (i64.and (i64.shr_u (local.get $x) (i64.const 24)) (i64.const 0xff0000)))
        (i64.or
          (i64.and (i64.shr_u (local.get $x) (i64.const 40)) (i64.const 0xff00))
          (i64.shr_u (local.get $x) (i64.const 56))))))

  ;; mulfold((in[0..8] ^ (secret[0..8] + seed)), (in[8..16] ^ (secret[8..16] - seed)))
  (func $mix16 (param $p i32) (param $s i32) (param $seed i64) (result i64)
    (call $mulfold
      (i64.xor (i64.load (local.get $p)) (i64.add (i64.load (local.get $s)) (local.get $seed)))
      (i64.xor (i64.load offset=8 (local.get $p)) (i64.sub (i64.load offset=8 (local.get $s)) (local.get $seed)))))

  ;; ---------------------------------------------------------------- inputs of 0..16 bytes

  (func $len_1to3 (param $p i32) (param $len i32) (param $seed i64) (result i64)
    (local $combined i32)
    (local.set $combined
      (i32.or
        (i32.or
          (i32.shl (i32.load8_u (local.get $p)) (i32.const 16))
          (i32.shl (i32.load8_u (i32.add (local.get $p) (i32.shr_u (local.get $len) (i32.const 1)))) (i32.const 24)))
        (i32.or
          (i32.load8_u (i32.sub (i32.add (local.get $p) (local.get $len)) (i32.const 1)))
          (i32.shl (local.get $len) (i32.const 8)))))
    (call $xxh64_avalanche
      (i64.xor
        (i64.extend_i32_u (local.get $combined))
        (i64.add
          (i64.extend_i32_u (i32.xor (i32.load (i32.const 0)) (i32.load (i32.const 4))))
          (local.get $seed)))))

  (func $len_4to8 (param $p i32) (param $len i32) (param $seed i64) (result i64)
    (local $input64 i64) (local $bitflip i64)
    ;; seed ^= swap32(low32(seed)) << 32, which is the high word of swap64(seed)
    (local.set $seed
      (i64.xor (local.get $seed)
        (i64.and (call $swap64 (local.get $seed)) (i64.const 0xffffffff00000000))))
    (local.set $bitflip
      (i64.sub (i64.xor (i64.load (i32.const 8)) (i64.load (i32.const 16))) (local.get $seed)))
    (local.set $input64
      (i64.add
        (i64.extend_i32_u (i32.load (i32.sub (i32.add (local.get $p) (local.get $len)) (i32.const 4))))
        (i64.shl (i64.extend_i32_u (i32.load (local.get $p))) (i64.const 32))))
    (call $rrmxmx (i64.xor (local.get $input64) (local.get $bitflip)) (i64.extend_i32_u (local.get $len))))

  (func $len_9to16 (param $p i32) (param $len i32) (param $seed i64) (result i64)
    (local $lo i64) (local $hi i64)
    (local.set $lo
      (i64.xor (i64.load (local.get $p))
        (i64.add (i64.xor (i64.load (i32.const 24)) (i64.load (i32.const 32))) (local.get $seed))))
    (local.set $hi
      (i64.xor (i64.load (i32.sub (i32.add (local.get $p) (local.get $len)) (i32.const 8)))
        (i64.sub (i64.xor (i64.load (i32.const 40)) (i64.load (i32.const 48))) (local.get $seed))))
    (call $avalanche
      (i64.add
        (i64.add (i64.extend_i32_u (local.get $len)) (call $swap64 (local.get $lo)))
        (i64.add (local.get $hi) (call $mulfold (local.get $lo) (local.get $hi))))))

  (func $len_0to16 (param $p i32) (param $len i32) (param $seed i64) (result i64)
    (if (i32.gt_u (local.get $len) (i32.const 8))
      (then (return (call $len_9to16 (local.get $p) (local.get $len) (local.get $seed)))))
    (if (i32.ge_u (local.get $len) (i32.const 4))
      (then (return (call $len_4to8 (local.get $p) (local.get $len) (local.get $seed)))))
    (if (local.get $len)
      (then (return (call $len_1to3 (local.get $p) (local.get $len) (local.get $seed)))))
    (call $xxh64_avalanche
      (i64.xor (local.get $seed) (i64.xor (i64.load (i32.const 56)) (i64.load (i32.const 64))))))

  ;; ---------------------------------------------------------------- inputs of 17..240 bytes

  (func $len_17to128 (param $p i32) (param $len i32) (param $seed i64) (result i64)
    (local $acc i64) (local $end i32)
    (local.set $end (i32.add (local.get $p) (local.get $len)))
    (local.set $acc (i64.mul (i64.extend_i32_u (local.get $len)) (i64.const 0x9E3779B185EBCA87)))
    (if (i32.gt_u (local.get $len) (i32.const 32))
      (then
        (if (i32.gt_u (local.get $len) (i32.const 64))
          (then
            (if (i32.gt_u (local.get $len) (i32.const 96))
              (then
                (local.set $acc (i64.add (local.get $acc)
                  (call $mix16 (i32.add (local.get $p) (i32.const 48)) (i32.const 96) (local.get $seed))))
                (local.set $acc (i64.add (local.get $acc)
                  (call $mix16 (i32.sub (local.get $end) (i32.const 64)) (i32.const 112) (local.get $seed))))))
            (local.set $acc (i64.add (local.get $acc)
              (call $mix16 (i32.add (local.get $p) (i32.const 32)) (i32.const 64) (local.get $seed))))
            (local.set $acc (i64.add (local.get $acc)
              (call $mix16 (i32.sub (local.get $end) (i32.const 48)) (i32.const 80) (local.get $seed))))))
        (local.set $acc (i64.add (local.get $acc)
          (call $mix16 (i32.add (local.get $p) (i32.const 16)) (i32.const 32) (local.get $seed))))
        (local.set $acc (i64.add (local.get $acc)
          (call $mix16 (i32.sub (local.get $end) (i32.const 32)) (i32.const 48) (local.get $seed))))))
    (local.set $acc (i64.add (local.get $acc)
      (call $mix16 (local.get $p) (i32.const 0) (local.get $seed))))
    (local.set $acc (i64.add (local.get $acc)
      (call $mix16 (i32.sub (local.get $end) (i32.const 16)) (i32.const 16) (local.get $seed))))
    (call $avalanche (local.get $acc)))

  (func $len_129to240 (param $p i32) (param $len i32) (param $seed i64) (result i64)
    (local $acc i64) (local $acc_end i64) (local $i i32) (local $rounds i32)
    (local.set $rounds (i32.shr_u (local.get $len) (i32.const 4)))
    (local.set $acc (i64.mul (i64.extend_i32_u (local.get $len)) (i64.const 0x9E3779B185EBCA87)))
    (loop $first8
      (local.set $acc (i64.add (local.get $acc)
        (call $mix16
          (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 4)))
          (i32.shl (local.get $i) (i32.const 4))
          (local.get $seed))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $first8 (i32.lt_u (local.get $i) (i32.const 8))))
    ;; last 16 bytes use secret[136 - 17 ..]
    (local.set $acc_end
      (call $mix16 (i32.sub (i32.add (local.get $p) (local.get $len)) (i32.const 16)) (i32.const 119) (local.get $seed)))
    (local.set $acc (call $avalanche (local.get $acc)))
    ;; rounds 8.. use secret[16*(i-8) + 3 ..]
    (block $done
      (loop $rest
        (br_if $done (i32.ge_u (local.get $i) (local.get $rounds)))
        (local.set $acc_end (i64.add (local.get $acc_end)
          (call $mix16
            (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 4)))
            (i32.add (i32.shl (i32.sub (local.get $i) (i32.const 8)) (i32.const 4)) (i32.const 3))
            (local.get $seed))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rest)))
    (call $avalanche (i64.add (local.get $acc) (local.get $acc_end))))

  ;; ---------------------------------------------------------------- inputs over 240 bytes

  ;; XXH3_initCustomSecret: words of kSecret, +seed at even and -seed at odd positions.
  (func $init_custom_secret (param $seed i64)
    (local $i i32)
    (loop $words
      (i64.store (i32.add (global.get $CUSTOM_SECRET) (local.get $i))
        (i64.add (i64.load (local.get $i)) (local.get $seed)))
      (i64.store offset=8 (i32.add (global.get $CUSTOM_SECRET) (local.get $i))
        (i64.sub (i64.load offset=8 (local.get $i)) (local.get $seed)))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br_if $words (i32.lt_u (local.get $i) (i32.const 192)))))

  ;; One 64-byte stripe into the 8 accumulators (scalar XXH3_accumulate_512), two lanes at a time:
  ;; acc[i] += lo32(key_i) * hi32(key_i) + data[i ^ 1].
  (func $accumulate_512 (param $p i32) (param $s i32)
    (local $j i32) (local $a i32) (local $d0 i64) (local $d1 i64) (local $k0 i64) (local $k1 i64)
    (loop $lanes
      (local.set $a (i32.add (global.get $ACC) (local.get $j)))
      (local.set $d0 (i64.load (i32.add (local.get $p) (local.get $j))))
      (local.set $d1 (i64.load offset=8 (i32.add (local.get $p) (local.get $j))))
      (local.set $k0 (i64.xor (local.get $d0) (i64.load (i32.add (local.get $s) (local.get $j)))))
      (local.set $k1 (i64.xor (local.get $d1) (i64.load offset=8 (i32.add (local.get $s) (local.get $j)))))
      (i64.store (local.get $a)
        (i64.add (i64.load (local.get $a))
          (i64.add (local.get $d1)
            (i64.mul (i64.and (local.get $k0) (i64.const 0xffffffff)) (i64.shr_u (local.get $k0) (i64.const 32))))))
      (i64.store offset=8 (local.get $a)
        (i64.add (i64.load offset=8 (local.get $a))
          (i64.add (local.get $d0)
            (i64.mul (i64.and (local.get $k1) (i64.const 0xffffffff)) (i64.shr_u (local.get $k1) (i64.const 32))))))
      (local.set $j (i32.add (local.get $j) (i32.const 16)))
      (br_if $lanes (i32.lt_u (local.get $j) (i32.const 64)))))

  (func $scramble (param $s i32)
    (local $i i32) (local $a i64)
    (loop $lanes
      (local.set $a (i64.load (i32.add (global.get $ACC) (local.get $i))))
      (local.set $a (i64.xor (local.get $a) (i64.shr_u (local.get $a) (i64.const 47))))
      (local.set $a (i64.xor (local.get $a) (i64.load (i32.add (local.get $s) (local.get $i)))))
      (i64.store (i32.add (global.get $ACC) (local.get $i)) (i64.mul (local.get $a) (i64.const 0x9E3779B1)))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br_if $lanes (i32.lt_u (local.get $i) (i32.const 64)))))

  ;; Long inputs with the custom secret at $CUSTOM_SECRET (192 bytes: 16 stripes per 1024-byte block).
  (func $hash_long (param $p i32) (param $len i32) (result i64)
    (local $blocks i32) (local $n i32) (local $s i32) (local $stripes i32) (local $base i32)
    (local $secret i32) (local $result i64) (local $i i32)
    (local.set $secret (global.get $CUSTOM_SECRET))
    (i64.store offset=0 (global.get $ACC) (i64.const 0xC2B2AE3D))
    (i64.store offset=8 (global.get $ACC) (i64.const 0x9E3779B185EBCA87))
    (i64.store offset=16 (global.get $ACC) (i64.const 0xC2B2AE3D27D4EB4F))
    (i64.store offset=24 (global.get $ACC) (i64.const 0x165667B19E3779F9))
    (i64.store offset=32 (global.get $ACC) (i64.const 0x85EBCA77C2B2AE63))
    (i64.store offset=40 (global.get $ACC) (i64.const 0x85EBCA77))
    (i64.store offset=48 (global.get $ACC) (i64.const 0x27D4EB2F165667C5))
    (i64.store offset=56 (global.get $ACC) (i64.const 0x9E3779B1))
    (local.set $blocks (i32.shr_u (i32.sub (local.get $len) (i32.const 1)) (i32.const 10)))
    (block $blocks_done
      (loop $each_block
        (br_if $blocks_done (i32.ge_u (local.get $n) (local.get $blocks)))
        (local.set $base (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 10))))
        (local.set $s (i32.const 0))
        (loop $stripes16
          (call $accumulate_512
            (i32.add (local.get $base) (i32.shl (local.get $s) (i32.const 6)))
            (i32.add (local.get $secret) (i32.shl (local.get $s) (i32.const 3))))
          (local.set $s (i32.add (local.get $s) (i32.const 1)))
          (br_if $stripes16 (i32.lt_u (local.get $s) (i32.const 16))))
        (call $scramble (i32.add (local.get $secret) (i32.const 128)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $each_block)))
    ;; the partial last block, then the last stripe (ending at the input's end)
    (local.set $base (i32.add (local.get $p) (i32.shl (local.get $blocks) (i32.const 10))))
    (local.set $stripes
      (i32.shr_u
        (i32.sub (i32.sub (local.get $len) (i32.const 1)) (i32.shl (local.get $blocks) (i32.const 10)))
        (i32.const 6)))
    (local.set $s (i32.const 0))
    (block $stripes_done
      (loop $each_stripe
        (br_if $stripes_done (i32.ge_u (local.get $s) (local.get $stripes)))
        (call $accumulate_512
          (i32.add (local.get $base) (i32.shl (local.get $s) (i32.const 6)))
          (i32.add (local.get $secret) (i32.shl (local.get $s) (i32.const 3))))
        (local.set $s (i32.add (local.get $s) (i32.const 1)))
        (br $each_stripe)))
    (call $accumulate_512
      (i32.sub (i32.add (local.get $p) (local.get $len)) (i32.const 64))
      (i32.add (local.get $secret) (i32.const 121)))
    ;; merge: start = len * PRIME64_1, secret offset 11
    (local.set $result (i64.mul (i64.extend_i32_u (local.get $len)) (i64.const 0x9E3779B185EBCA87)))
    (local.set $i (i32.const 0))
    (loop $merge
      (local.set $result (i64.add (local.get $result)
        (call $mulfold
          (i64.xor
            (i64.load (i32.add (global.get $ACC) (local.get $i)))
            (i64.load offset=11 (i32.add (local.get $secret) (local.get $i))))
          (i64.xor
            (i64.load offset=8 (i32.add (global.get $ACC) (local.get $i)))
            (i64.load offset=19 (i32.add (local.get $secret) (local.get $i)))))))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br_if $merge (i32.lt_u (local.get $i) (i32.const 64))))
    (call $avalanche (local.get $result)))

  ;; ---------------------------------------------------------------- entry points

  ;; Any input length; for inputs over 240 bytes the custom secret must already be set up.
  (func $hash (param $p i32) (param $len i32) (param $seed i64) (result i64)
    (if (i32.le_u (local.get $len) (i32.const 16))
      (then (return (call $len_0to16 (local.get $p) (local.get $len) (local.get $seed)))))
    (if (i32.le_u (local.get $len) (i32.const 128))
      (then (return (call $len_17to128 (local.get $p) (local.get $len) (local.get $seed)))))
    (if (i32.le_u (local.get $len) (i32.const 240))
      (then (return (call $len_129to240 (local.get $p) (local.get $len) (local.get $seed)))))
    (call $hash_long (local.get $p) (local.get $len)))

  ;; Hashes `count` consecutive inputs of `len` bytes starting at `src` and stores each u64
  ;; (little-endian, i.e. packed [lo, hi] u32 pairs) at `dst`.
  (func (export "hash_blocks")
    (param $src i32) (param $len i32) (param $count i32) (param $dst i32)
    (param $seed_lo i32) (param $seed_hi i32)
    (local $seed i64) (local $k i32)
    (local.set $seed
      (i64.or (i64.extend_i32_u (local.get $seed_lo))
        (i64.shl (i64.extend_i32_u (local.get $seed_hi)) (i64.const 32))))
    (if (i32.gt_u (local.get $len) (i32.const 240))
      (then (call $init_custom_secret (local.get $seed))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $k) (local.get $count)))
        (i64.store
          (i32.add (local.get $dst) (i32.shl (local.get $k) (i32.const 3)))
          (call $hash
            (i32.add (local.get $src) (i32.mul (local.get $k) (local.get $len)))
            (local.get $len)
            (local.get $seed)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $each))))

  ;; Rolling sequence hashes over `count` local hashes at `src` (u64 each), written to `dst`:
  ;; dst[0] = src[0]; dst[i] = xxh3_64(LE64(dst[i-1]) || LE64(src[i]), seed). `dst` may equal `src`.
  (func (export "hash_sequence")
    (param $src i32) (param $count i32) (param $dst i32) (param $seed_lo i32) (param $seed_hi i32)
    (local $seed i64) (local $k i32) (local $prev i64) (local $lo i64) (local $hi i64)
    (local $flip1 i64) (local $flip2 i64)
    (if (i32.eqz (local.get $count)) (then (return)))
    (local.set $seed
      (i64.or (i64.extend_i32_u (local.get $seed_lo))
        (i64.shl (i64.extend_i32_u (local.get $seed_hi)) (i64.const 32))))
    ;; the 16-byte (9..16) path with its two seeded bitflips hoisted out of the loop
    (local.set $flip1 (i64.add (i64.xor (i64.load (i32.const 24)) (i64.load (i32.const 32))) (local.get $seed)))
    (local.set $flip2 (i64.sub (i64.xor (i64.load (i32.const 40)) (i64.load (i32.const 48))) (local.get $seed)))
    (local.set $prev (i64.load (local.get $src)))
    (i64.store (local.get $dst) (local.get $prev))
    (local.set $k (i32.const 1))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $k) (local.get $count)))
        (local.set $lo (i64.xor (local.get $prev) (local.get $flip1)))
        (local.set $hi
          (i64.xor (i64.load (i32.add (local.get $src) (i32.shl (local.get $k) (i32.const 3)))) (local.get $flip2)))
        (local.set $prev
          (call $avalanche
            (i64.add
              (i64.add (i64.const 16) (call $swap64 (local.get $lo)))
              (i64.add (local.get $hi) (call $mulfold (local.get $lo) (local.get $hi))))))
        (i64.store (i32.add (local.get $dst) (i32.shl (local.get $k) (i32.const 3))) (local.get $prev))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $each))))
)
