;; XXH3-64 kernel for KV block hashing (bit-exact with xxhash.h XXH3_64bits_withSeed).
;;
;; Assembled by scripts/build-wasm.ts (or in-process by src/tokens/xxh3-wasm.ts) with the wabt npm
;; package. The readable reference for every path is src/tokens/xxh3.ts.
;;
;; Memory layout (bytes):
;;   [0, 192)     XXH3_kSecret
;;   [192, 384)   custom secret derived from the seed (long inputs only, rebuilt per call)
;;   [1024, ...)  caller data: token blocks in, packed u64 hashes out (managed by the JS side)
;;
;; A u64 seed crosses the JS boundary as two i32 halves so the hot path never makes a BigInt.
;; wasm has no 64x64->128 multiply: $mulfold builds the high word from four 32x32->64 products.
;; Each length class has its own loop over all blocks of a call, with the per-call constants
;; (seeded bitflips) hoisted and the mixing written inline. The 17..128-byte loop (block sizes
;; 5..32, the common ones) uses wasm SIMD (v128, on by default in every supported Node).
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

  ;; where the seeded copy of the secret for long inputs lives
  (global $CUSTOM_SECRET i32 (i32.const 192))

  ;; ---------------------------------------------------------------- cold-path primitives

  ;; Low 64 bits XOR high 64 bits of the 128-bit product a*b. The hot loops below carry this same
  ;; sequence inline (marked "mulfold"): V8 in Node 20 does not inline wasm calls, and a call
  ;; costs about as much as the mixing itself.
  (func $mulfold (param $a i64) (param $b i64) (result i64)
    (local $ll i64) (local $lh i64) (local $cross i64)
    (local.set $ll (i64.mul (i64.and (local.get $a) (i64.const 0xffffffff)) (i64.and (local.get $b) (i64.const 0xffffffff))))
    (local.set $lh (i64.mul (i64.and (local.get $a) (i64.const 0xffffffff)) (i64.shr_u (local.get $b) (i64.const 32))))
    ;; cannot overflow: (2^32-1) + (2^32-1) + (2^32-1)^2 = 2^64-1
    (local.set $cross
      (i64.add
        (i64.add (i64.shr_u (local.get $ll) (i64.const 32)) (i64.and (local.get $lh) (i64.const 0xffffffff)))
        (i64.mul (i64.shr_u (local.get $a) (i64.const 32)) (i64.and (local.get $b) (i64.const 0xffffffff)))))
    (i64.xor
      (i64.mul (local.get $a) (local.get $b))
      (i64.add
        (i64.add
          (i64.mul (i64.shr_u (local.get $a) (i64.const 32)) (i64.shr_u (local.get $b) (i64.const 32)))
          (i64.shr_u (local.get $lh) (i64.const 32)))
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

  (func $swap64 (param $x i64) (result i64)
    (local.set $x
      (i64.or
        (i64.and (i64.shr_u (local.get $x) (i64.const 8)) (i64.const 0x00ff00ff00ff00ff))
        (i64.shl (i64.and (local.get $x) (i64.const 0x00ff00ff00ff00ff)) (i64.const 8))))
    (local.set $x
      (i64.or
        (i64.and (i64.shr_u (local.get $x) (i64.const 16)) (i64.const 0x0000ffff0000ffff))
        (i64.shl (i64.and (local.get $x) (i64.const 0x0000ffff0000ffff)) (i64.const 16))))
    (i64.rotl (local.get $x) (i64.const 32)))

  ;; ---------------------------------------------------------------- 0..3 bytes (never a block of tokens)

  (func $len_0to3 (param $p i32) (param $len i32) (param $seed i64) (result i64)
    (if (i32.eqz (local.get $len))
      (then
        (return (call $xxh64_avalanche
          (i64.xor (local.get $seed) (i64.xor (i64.load (i32.const 56)) (i64.load (i32.const 64))))))))
    ;; combined = c1 << 16 | c2 << 24 | c3 | len << 8 (c1, c2, c3: first, middle, last byte)
    (call $xxh64_avalanche
      (i64.xor
        (i64.extend_i32_u
          (i32.or
            (i32.or
              (i32.shl (i32.load8_u (local.get $p)) (i32.const 16))
              (i32.shl
                (i32.load8_u (i32.add (local.get $p) (i32.shr_u (local.get $len) (i32.const 1))))
                (i32.const 24)))
            (i32.or
              (i32.load8_u (i32.sub (i32.add (local.get $p) (local.get $len)) (i32.const 1)))
              (i32.shl (local.get $len) (i32.const 8)))))
        (i64.add
          (i64.extend_i32_u (i32.xor (i32.load (i32.const 0)) (i32.load (i32.const 4))))
          (local.get $seed)))))

  (func $blocks_0to3 (param $src i32) (param $len i32) (param $count i32) (param $dst i32) (param $seed i64)
    (local $k i32)
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $k) (local.get $count)))
        (i64.store (i32.add (local.get $dst) (i32.shl (local.get $k) (i32.const 3)))
          (call $len_0to3
            (i32.add (local.get $src) (i32.mul (local.get $k) (local.get $len)))
            (local.get $len)
            (local.get $seed)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $each))))

  ;; ---------------------------------------------------------------- 4..8 bytes (block sizes 1, 2)

  (func $blocks_4to8 (param $src i32) (param $len i32) (param $count i32) (param $dst i32) (param $seed i64)
    (local $bitflip i64) (local $len64 i64) (local $h i64) (local $p i32) (local $out i32) (local $stop i32)
    ;; seed ^= swap32(low32(seed)) << 32, i.e. the high word of swap64(seed)
    (local.set $seed
      (i64.xor (local.get $seed) (i64.and (call $swap64 (local.get $seed)) (i64.const 0xffffffff00000000))))
    (local.set $bitflip (i64.sub (i64.xor (i64.load (i32.const 8)) (i64.load (i32.const 16))) (local.get $seed)))
    (local.set $len64 (i64.extend_i32_u (local.get $len)))
    (local.set $p (local.get $src))
    (local.set $out (local.get $dst))
    (local.set $stop (i32.add (local.get $dst) (i32.shl (local.get $count) (i32.const 3))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $out) (local.get $stop)))
        ;; (LE32(last 4 bytes) + (LE32(first 4 bytes) << 32)) ^ bitflip
        (local.set $h
          (i64.xor (local.get $bitflip)
            (i64.add
              (i64.load32_u (i32.sub (i32.add (local.get $p) (local.get $len)) (i32.const 4)))
              (i64.shl (i64.load32_u (local.get $p)) (i64.const 32)))))
        ;; rrmxmx
        (local.set $h
          (i64.xor (local.get $h)
            (i64.xor (i64.rotl (local.get $h) (i64.const 49)) (i64.rotl (local.get $h) (i64.const 24)))))
        (local.set $h (i64.mul (local.get $h) (i64.const 0x9FB21C651E98DF25)))
        (local.set $h
          (i64.xor (local.get $h) (i64.add (i64.shr_u (local.get $h) (i64.const 35)) (local.get $len64))))
        (local.set $h (i64.mul (local.get $h) (i64.const 0x9FB21C651E98DF25)))
        (i64.store (local.get $out) (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 28))))
        (local.set $p (i32.add (local.get $p) (local.get $len)))
        (local.set $out (i32.add (local.get $out) (i32.const 8)))
        (br $each))))

  ;; ---------------------------------------------------------------- 9..16 bytes (block sizes 3, 4)

  (func $blocks_9to16 (param $src i32) (param $len i32) (param $count i32) (param $dst i32) (param $seed i64)
    (local $flip1 i64) (local $flip2 i64) (local $len64 i64) (local $lo i64) (local $hi i64) (local $x i64)
    (local $ll i64) (local $lh i64) (local $cross i64) (local $h i64)
    (local $p i32) (local $out i32) (local $stop i32)
    (local.set $flip1 (i64.add (i64.xor (i64.load (i32.const 24)) (i64.load (i32.const 32))) (local.get $seed)))
    (local.set $flip2 (i64.sub (i64.xor (i64.load (i32.const 40)) (i64.load (i32.const 48))) (local.get $seed)))
    (local.set $len64 (i64.extend_i32_u (local.get $len)))
    (local.set $p (local.get $src))
    (local.set $out (local.get $dst))
    (local.set $stop (i32.add (local.get $dst) (i32.shl (local.get $count) (i32.const 3))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $out) (local.get $stop)))
        (local.set $lo (i64.xor (i64.load (local.get $p)) (local.get $flip1)))
        (local.set $hi
          (i64.xor (i64.load (i32.sub (i32.add (local.get $p) (local.get $len)) (i32.const 8))) (local.get $flip2)))
        ;; swap64(lo)
        (local.set $x
          (i64.or
            (i64.and (i64.shr_u (local.get $lo) (i64.const 8)) (i64.const 0x00ff00ff00ff00ff))
            (i64.shl (i64.and (local.get $lo) (i64.const 0x00ff00ff00ff00ff)) (i64.const 8))))
        (local.set $x
          (i64.or
            (i64.and (i64.shr_u (local.get $x) (i64.const 16)) (i64.const 0x0000ffff0000ffff))
            (i64.shl (i64.and (local.get $x) (i64.const 0x0000ffff0000ffff)) (i64.const 16))))
        ;; h = len + swap64(lo) + hi + mulfold(lo, hi)
        (local.set $h
          (i64.add (i64.add (local.get $len64) (i64.rotl (local.get $x) (i64.const 32))) (local.get $hi)))
        ;; mulfold(lo, hi)
        (local.set $ll
          (i64.mul (i64.and (local.get $lo) (i64.const 0xffffffff)) (i64.and (local.get $hi) (i64.const 0xffffffff))))
        (local.set $lh
          (i64.mul (i64.and (local.get $lo) (i64.const 0xffffffff)) (i64.shr_u (local.get $hi) (i64.const 32))))
        (local.set $cross
          (i64.add
            (i64.add (i64.shr_u (local.get $ll) (i64.const 32)) (i64.and (local.get $lh) (i64.const 0xffffffff)))
            (i64.mul (i64.shr_u (local.get $lo) (i64.const 32)) (i64.and (local.get $hi) (i64.const 0xffffffff)))))
        (local.set $h
          (i64.add (local.get $h)
            (i64.xor
              (i64.mul (local.get $lo) (local.get $hi))
              (i64.add
                (i64.add
                  (i64.mul (i64.shr_u (local.get $lo) (i64.const 32)) (i64.shr_u (local.get $hi) (i64.const 32)))
                  (i64.shr_u (local.get $lh) (i64.const 32)))
                (i64.shr_u (local.get $cross) (i64.const 32))))))
        ;; avalanche
        (local.set $h (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 37))))
        (local.set $h (i64.mul (local.get $h) (i64.const 0x165667919E3779F9)))
        (i64.store (local.get $out) (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 32))))
        (local.set $p (i32.add (local.get $p) (local.get $len)))
        (local.set $out (i32.add (local.get $out) (i32.const 8)))
        (br $each))))

  ;; ---------------------------------------------------------------- 17..128 bytes (block sizes 5..32)

  ;; acc = len * PRIME64_1 + mix16 of input[0..] and input[len-16..] (+ 16..32 / len-32..
  ;; when len > 32, + 32..48 / len-48.. when len > 64, + 48..64 / len-64.. when len > 96), then
  ;; avalanche. The branches on len go the same way for every block of a call.
  ;; SIMD: the two mix16 of a pair (input[16i..] and input[len-16(i+1)..]) run in the two i64 lanes.
  ;; Their 64x64->128 products come from four i64x2.extmul_i32x4_u (32x32->64) over the halves
  ;; interleaved as va = [a.lo, a'.lo, a.hi, a'.hi], vb = [b.lo, b'.lo, b.hi, b'.hi] and vb with its
  ;; halves swapped; lo XOR hi of each product is summed per lane. About 1.8x the scalar loop's speed.
  ;; The seeded secret words (even: +seed, odd: -seed) are computed once per call, two per vector.
  (func $blocks_17to128 (param $src i32) (param $len i32) (param $count i32) (param $dst i32) (param $seed i64)
    (param $seq i32)
    (local $kf0 v128) (local $kl0 v128) (local $kf1 v128) (local $kl1 v128) (local $kf2 v128) (local $kl2 v128) (local $kf3 v128) (local $kl3 v128)
    (local $seeds v128) (local $mask v128) (local $cf v128) (local $cl v128) (local $va v128) (local $vb v128)
    (local $vs v128) (local $ll v128) (local $lh v128) (local $cross v128) (local $sum v128)
    (local $start i64) (local $acc i64) (local $p i32) (local $end i32) (local $out i32) (local $stop i32)
    (local $prev i64) (local $lo i64) (local $hi i64) (local $x i64) (local $sll i64) (local $slh i64)
    (local $scross i64) (local $flip1 i64) (local $flip2 i64)
    (local.set $flip1 (i64.add (i64.xor (i64.load (i32.const 24)) (i64.load (i32.const 32))) (local.get $seed)))
    (local.set $flip2 (i64.sub (i64.xor (i64.load (i32.const 40)) (i64.load (i32.const 48))) (local.get $seed)))
    (local.set $seeds (i64x2.replace_lane 1 (i64x2.splat (local.get $seed)) (i64.sub (i64.const 0) (local.get $seed))))
    (local.set $mask (v128.const i64x2 0xffffffff 0xffffffff))
    (local.set $kf0 (i64x2.add (v128.load (i32.const 0)) (local.get $seeds)))
    (local.set $kl0 (i64x2.add (v128.load (i32.const 16)) (local.get $seeds)))
    (local.set $kf1 (i64x2.add (v128.load (i32.const 32)) (local.get $seeds)))
    (local.set $kl1 (i64x2.add (v128.load (i32.const 48)) (local.get $seeds)))
    (local.set $kf2 (i64x2.add (v128.load (i32.const 64)) (local.get $seeds)))
    (local.set $kl2 (i64x2.add (v128.load (i32.const 80)) (local.get $seeds)))
    (local.set $kf3 (i64x2.add (v128.load (i32.const 96)) (local.get $seeds)))
    (local.set $kl3 (i64x2.add (v128.load (i32.const 112)) (local.get $seeds)))
    (local.set $start (i64.mul (i64.extend_i32_u (local.get $len)) (i64.const 0x9E3779B185EBCA87)))
    (local.set $p (local.get $src))
    (local.set $out (local.get $dst))
    (local.set $stop (i32.add (local.get $dst) (i32.shl (local.get $count) (i32.const 3))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $out) (local.get $stop)))
        (local.set $end (i32.add (local.get $p) (local.get $len)))
        (local.set $sum (v128.const i64x2 0 0))
        ;; mix16(input[0..], secret[0..]) + mix16(input[len-16..], secret[16..]), one per lane
        (local.set $cf (v128.xor (v128.load offset=0 (local.get $p)) (local.get $kf0)))
        (local.set $cl (v128.xor (v128.load (i32.sub (local.get $end) (i32.const 16))) (local.get $kl0)))
        (local.set $va (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $cf) (local.get $cl)))
        (local.set $vb (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $cf) (local.get $cl)))
        (local.set $vs (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $vb) (local.get $vb)))
        (local.set $ll (i64x2.extmul_low_i32x4_u (local.get $va) (local.get $vb)))
        (local.set $lh (i64x2.extmul_low_i32x4_u (local.get $va) (local.get $vs)))
        (local.set $cross
          (i64x2.add
            (i64x2.add (i64x2.shr_u (local.get $ll) (i32.const 32)) (v128.and (local.get $lh) (local.get $mask)))
            (i64x2.extmul_high_i32x4_u (local.get $va) (local.get $vs))))
        (local.set $sum
          (i64x2.add (local.get $sum)
            (v128.xor
              (v128.or (i64x2.shl (local.get $cross) (i32.const 32)) (v128.and (local.get $ll) (local.get $mask)))
              (i64x2.add
                (i64x2.add (i64x2.extmul_high_i32x4_u (local.get $va) (local.get $vb)) (i64x2.shr_u (local.get $lh) (i32.const 32)))
                (i64x2.shr_u (local.get $cross) (i32.const 32))))))
        (if (i32.gt_u (local.get $len) (i32.const 32))
          (then
            ;; mix16(input[16..], secret[32..]) + mix16(input[len-32..], secret[48..]), one per lane
            (local.set $cf (v128.xor (v128.load offset=16 (local.get $p)) (local.get $kf1)))
            (local.set $cl (v128.xor (v128.load (i32.sub (local.get $end) (i32.const 32))) (local.get $kl1)))
            (local.set $va (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $cf) (local.get $cl)))
            (local.set $vb (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $cf) (local.get $cl)))
            (local.set $vs (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $vb) (local.get $vb)))
            (local.set $ll (i64x2.extmul_low_i32x4_u (local.get $va) (local.get $vb)))
            (local.set $lh (i64x2.extmul_low_i32x4_u (local.get $va) (local.get $vs)))
            (local.set $cross
              (i64x2.add
                (i64x2.add (i64x2.shr_u (local.get $ll) (i32.const 32)) (v128.and (local.get $lh) (local.get $mask)))
                (i64x2.extmul_high_i32x4_u (local.get $va) (local.get $vs))))
            (local.set $sum
              (i64x2.add (local.get $sum)
                (v128.xor
                  (v128.or (i64x2.shl (local.get $cross) (i32.const 32)) (v128.and (local.get $ll) (local.get $mask)))
                  (i64x2.add
                    (i64x2.add (i64x2.extmul_high_i32x4_u (local.get $va) (local.get $vb)) (i64x2.shr_u (local.get $lh) (i32.const 32)))
                    (i64x2.shr_u (local.get $cross) (i32.const 32))))))
            (if (i32.gt_u (local.get $len) (i32.const 64))
              (then
                ;; mix16(input[32..], secret[64..]) + mix16(input[len-48..], secret[80..]), one per lane
                (local.set $cf (v128.xor (v128.load offset=32 (local.get $p)) (local.get $kf2)))
                (local.set $cl (v128.xor (v128.load (i32.sub (local.get $end) (i32.const 48))) (local.get $kl2)))
                (local.set $va (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $cf) (local.get $cl)))
                (local.set $vb (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $cf) (local.get $cl)))
                (local.set $vs (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $vb) (local.get $vb)))
                (local.set $ll (i64x2.extmul_low_i32x4_u (local.get $va) (local.get $vb)))
                (local.set $lh (i64x2.extmul_low_i32x4_u (local.get $va) (local.get $vs)))
                (local.set $cross
                  (i64x2.add
                    (i64x2.add (i64x2.shr_u (local.get $ll) (i32.const 32)) (v128.and (local.get $lh) (local.get $mask)))
                    (i64x2.extmul_high_i32x4_u (local.get $va) (local.get $vs))))
                (local.set $sum
                  (i64x2.add (local.get $sum)
                    (v128.xor
                      (v128.or (i64x2.shl (local.get $cross) (i32.const 32)) (v128.and (local.get $ll) (local.get $mask)))
                      (i64x2.add
                        (i64x2.add (i64x2.extmul_high_i32x4_u (local.get $va) (local.get $vb)) (i64x2.shr_u (local.get $lh) (i32.const 32)))
                        (i64x2.shr_u (local.get $cross) (i32.const 32))))))
                (if (i32.gt_u (local.get $len) (i32.const 96))
                  (then
                    ;; mix16(input[48..], secret[96..]) + mix16(input[len-64..], secret[112..]), one per lane
                    (local.set $cf (v128.xor (v128.load offset=48 (local.get $p)) (local.get $kf3)))
                    (local.set $cl (v128.xor (v128.load (i32.sub (local.get $end) (i32.const 64))) (local.get $kl3)))
                    (local.set $va (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $cf) (local.get $cl)))
                    (local.set $vb (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $cf) (local.get $cl)))
                    (local.set $vs (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $vb) (local.get $vb)))
                    (local.set $ll (i64x2.extmul_low_i32x4_u (local.get $va) (local.get $vb)))
                    (local.set $lh (i64x2.extmul_low_i32x4_u (local.get $va) (local.get $vs)))
                    (local.set $cross
                      (i64x2.add
                        (i64x2.add (i64x2.shr_u (local.get $ll) (i32.const 32)) (v128.and (local.get $lh) (local.get $mask)))
                        (i64x2.extmul_high_i32x4_u (local.get $va) (local.get $vs))))
                    (local.set $sum
                      (i64x2.add (local.get $sum)
                        (v128.xor
                          (v128.or (i64x2.shl (local.get $cross) (i32.const 32)) (v128.and (local.get $ll) (local.get $mask)))
                          (i64x2.add
                            (i64x2.add (i64x2.extmul_high_i32x4_u (local.get $va) (local.get $vb)) (i64x2.shr_u (local.get $lh) (i32.const 32)))
                            (i64x2.shr_u (local.get $cross) (i32.const 32))))))))))))
        (local.set $acc
          (i64.add (local.get $start)
            (i64.add (i64x2.extract_lane 0 (local.get $sum)) (i64x2.extract_lane 1 (local.get $sum)))))
        ;; avalanche
        (local.set $acc (i64.xor (local.get $acc) (i64.shr_u (local.get $acc) (i64.const 37))))
        (local.set $acc (i64.mul (local.get $acc) (i64.const 0x165667919E3779F9)))
        (local.set $acc (i64.xor (local.get $acc) (i64.shr_u (local.get $acc) (i64.const 32))))
        (i64.store (local.get $out) (local.get $acc))
        (if (local.get $seq)
          (then
            ;; The rolling sequence hash of this block, as in hash_sequence: its latency chain runs
            ;; alongside the next blocks' local hashing instead of after all of it.
            (if (i32.eq (local.get $out) (local.get $dst))
              (then (local.set $prev (local.get $acc)))
              (else
                (local.set $lo (i64.xor (local.get $prev) (local.get $flip1)))
                (local.set $hi (i64.xor (local.get $acc) (local.get $flip2)))
                ;; swap64(lo)
                (local.set $x
                  (i64.or
                    (i64.and (i64.shr_u (local.get $lo) (i64.const 8)) (i64.const 0x00ff00ff00ff00ff))
                    (i64.shl (i64.and (local.get $lo) (i64.const 0x00ff00ff00ff00ff)) (i64.const 8))))
                (local.set $x
                  (i64.or
                    (i64.and (i64.shr_u (local.get $x) (i64.const 16)) (i64.const 0x0000ffff0000ffff))
                    (i64.shl (i64.and (local.get $x) (i64.const 0x0000ffff0000ffff)) (i64.const 16))))
                ;; prev = 16 + swap64(lo) + hi + mulfold(lo, hi)
                (local.set $prev
                  (i64.add (i64.add (i64.const 16) (i64.rotl (local.get $x) (i64.const 32))) (local.get $hi)))
                (local.set $sll
                  (i64.mul (i64.and (local.get $lo) (i64.const 0xffffffff)) (i64.and (local.get $hi) (i64.const 0xffffffff))))
                (local.set $slh
                  (i64.mul (i64.and (local.get $lo) (i64.const 0xffffffff)) (i64.shr_u (local.get $hi) (i64.const 32))))
                (local.set $scross
                  (i64.add
                    (i64.add (i64.shr_u (local.get $sll) (i64.const 32)) (i64.and (local.get $slh) (i64.const 0xffffffff)))
                    (i64.mul (i64.shr_u (local.get $lo) (i64.const 32)) (i64.and (local.get $hi) (i64.const 0xffffffff)))))
                (local.set $prev
                  (i64.add (local.get $prev)
                    (i64.xor
                      (i64.mul (local.get $lo) (local.get $hi))
                      (i64.add
                        (i64.add
                          (i64.mul (i64.shr_u (local.get $lo) (i64.const 32)) (i64.shr_u (local.get $hi) (i64.const 32)))
                          (i64.shr_u (local.get $slh) (i64.const 32)))
                        (i64.shr_u (local.get $scross) (i64.const 32))))))
                ;; avalanche
                (local.set $prev (i64.xor (local.get $prev) (i64.shr_u (local.get $prev) (i64.const 37))))
                (local.set $prev (i64.mul (local.get $prev) (i64.const 0x165667919E3779F9)))
                (local.set $prev (i64.xor (local.get $prev) (i64.shr_u (local.get $prev) (i64.const 32))))))
            (i64.store (i32.add (local.get $seq) (i32.sub (local.get $out) (local.get $dst))) (local.get $prev))))
        (local.set $p (local.get $end))
        (local.set $out (i32.add (local.get $out) (i32.const 8)))
        (br $each))))


  ;; ---------------------------------------------------------------- 129..240 bytes (block sizes 33..60)

  ;; acc = avalanche(len * PRIME64_1 + mix16 of rounds 0..7 with secret[16i..]);
  ;; acc_end = mix16 of the last 16 bytes with secret[119..] + mix16 of rounds 8.. with secret[16(i-8)+3..];
  ;; hash = avalanche(acc + acc_end). One loop: round `rounds` stands for the last 16 bytes.
  (func $blocks_129to240 (param $src i32) (param $len i32) (param $count i32) (param $dst i32) (param $seed i64)
    (local $start i64) (local $acc i64) (local $acc_end i64) (local $m i64) (local $a i64) (local $b i64)
    (local $ll i64) (local $lh i64) (local $cross i64)
    (local $p i32) (local $out i32) (local $stop i32) (local $o i32) (local $last_o i32) (local $in i32) (local $s i32)
    (local.set $start (i64.mul (i64.extend_i32_u (local.get $len)) (i64.const 0x9E3779B185EBCA87)))
    (local.set $last_o (i32.and (local.get $len) (i32.const -16)))
    (local.set $p (local.get $src))
    (local.set $out (local.get $dst))
    (local.set $stop (i32.add (local.get $dst) (i32.shl (local.get $count) (i32.const 3))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $out) (local.get $stop)))
        (local.set $acc (local.get $start))
        (local.set $acc_end (i64.const 0))
        (local.set $o (i32.const 0))
        (loop $rounds
          (local.set $in (i32.add (local.get $p) (local.get $o)))
          (local.set $s (local.get $o))
          (if (i32.ge_u (local.get $o) (i32.const 128))
            (then (local.set $s (i32.sub (local.get $o) (i32.const 125)))))
          (if (i32.eq (local.get $o) (local.get $last_o))
            (then
              (local.set $in (i32.sub (i32.add (local.get $p) (local.get $len)) (i32.const 16)))
              (local.set $s (i32.const 119))))
          (local.set $a
            (i64.xor (i64.load (local.get $in)) (i64.add (i64.load (local.get $s)) (local.get $seed))))
          (local.set $b
            (i64.xor (i64.load offset=8 (local.get $in)) (i64.sub (i64.load offset=8 (local.get $s)) (local.get $seed))))
          ;; m = mulfold(a, b)
          (local.set $ll
            (i64.mul (i64.and (local.get $a) (i64.const 0xffffffff)) (i64.and (local.get $b) (i64.const 0xffffffff))))
          (local.set $lh
            (i64.mul (i64.and (local.get $a) (i64.const 0xffffffff)) (i64.shr_u (local.get $b) (i64.const 32))))
          (local.set $cross
            (i64.add
              (i64.add (i64.shr_u (local.get $ll) (i64.const 32)) (i64.and (local.get $lh) (i64.const 0xffffffff)))
              (i64.mul (i64.shr_u (local.get $a) (i64.const 32)) (i64.and (local.get $b) (i64.const 0xffffffff)))))
          (local.set $m
            (i64.xor
              (i64.mul (local.get $a) (local.get $b))
              (i64.add
                (i64.add
                  (i64.mul (i64.shr_u (local.get $a) (i64.const 32)) (i64.shr_u (local.get $b) (i64.const 32)))
                  (i64.shr_u (local.get $lh) (i64.const 32)))
                (i64.shr_u (local.get $cross) (i64.const 32)))))
          (if (i32.lt_u (local.get $o) (i32.const 128))
            (then (local.set $acc (i64.add (local.get $acc) (local.get $m))))
            (else (local.set $acc_end (i64.add (local.get $acc_end) (local.get $m)))))
          (local.set $o (i32.add (local.get $o) (i32.const 16)))
          (br_if $rounds (i32.le_u (local.get $o) (local.get $last_o))))
        (i64.store (local.get $out)
          (call $avalanche (i64.add (call $avalanche (local.get $acc)) (local.get $acc_end))))
        (local.set $p (i32.add (local.get $p) (local.get $len)))
        (local.set $out (i32.add (local.get $out) (i32.const 8)))
        (br $each))))

  ;; ---------------------------------------------------------------- over 240 bytes (block sizes >= 61)

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

  ;; The stripe algorithm with the custom secret (192 bytes: 16 stripes of 64 bytes per 1024-byte
  ;; block, accumulators scrambled after each full block). Stripe i of the floor((len - 1) / 64)
  ;; whole stripes that end before the input's last byte uses secret[8(i mod 16)..]; then one last
  ;; stripe, the input's final 64 bytes, uses secret[121..]. The accumulators live in $a0..$a7.
  (func $blocks_long (param $src i32) (param $len i32) (param $count i32) (param $dst i32)
    (local $a0 i64) (local $a1 i64) (local $a2 i64) (local $a3 i64)
    (local $a4 i64) (local $a5 i64) (local $a6 i64) (local $a7 i64)
    (local $d i64) (local $k i64) (local $result i64)
    (local $p i32) (local $out i32) (local $stop i32) (local $full i32) (local $stripes i32)
    (local $i i32) (local $sp i32) (local $ss i32)
    (local.set $full (i32.shl (i32.shr_u (i32.sub (local.get $len) (i32.const 1)) (i32.const 10)) (i32.const 4)))
    (local.set $stripes
      (i32.add (local.get $full)
        (i32.shr_u (i32.and (i32.sub (local.get $len) (i32.const 1)) (i32.const 1023)) (i32.const 6))))
    (local.set $p (local.get $src))
    (local.set $out (local.get $dst))
    (local.set $stop (i32.add (local.get $dst) (i32.shl (local.get $count) (i32.const 3))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $out) (local.get $stop)))
        (local.set $a0 (i64.const 0xC2B2AE3D))
        (local.set $a1 (i64.const 0x9E3779B185EBCA87))
        (local.set $a2 (i64.const 0xC2B2AE3D27D4EB4F))
        (local.set $a3 (i64.const 0x165667B19E3779F9))
        (local.set $a4 (i64.const 0x85EBCA77C2B2AE63))
        (local.set $a5 (i64.const 0x85EBCA77))
        (local.set $a6 (i64.const 0x27D4EB2F165667C5))
        (local.set $a7 (i64.const 0x9E3779B1))
        (local.set $i (i32.const 0))
        (loop $stripe
          (if (i32.lt_u (local.get $i) (local.get $stripes))
            (then
              (local.set $sp (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 6))))
              (local.set $ss
                (i32.add (global.get $CUSTOM_SECRET) (i32.shl (i32.and (local.get $i) (i32.const 15)) (i32.const 3)))))
            (else
              (local.set $sp (i32.sub (i32.add (local.get $p) (local.get $len)) (i32.const 64)))
              (local.set $ss (i32.add (global.get $CUSTOM_SECRET) (i32.const 121)))))
          ;; lane n: key = data ^ secret; acc[n] += lo32(key) * hi32(key); acc[n ^ 1] += data
          (local.set $d (i64.load offset=0 (local.get $sp)))
          (local.set $k (i64.xor (local.get $d) (i64.load offset=0 (local.get $ss))))
          (local.set $a1 (i64.add (local.get $a1) (local.get $d)))
          (local.set $a0 (i64.add (local.get $a0)
            (i64.mul (i64.and (local.get $k) (i64.const 0xffffffff)) (i64.shr_u (local.get $k) (i64.const 32)))))
          (local.set $d (i64.load offset=8 (local.get $sp)))
          (local.set $k (i64.xor (local.get $d) (i64.load offset=8 (local.get $ss))))
          (local.set $a0 (i64.add (local.get $a0) (local.get $d)))
          (local.set $a1 (i64.add (local.get $a1)
            (i64.mul (i64.and (local.get $k) (i64.const 0xffffffff)) (i64.shr_u (local.get $k) (i64.const 32)))))
          (local.set $d (i64.load offset=16 (local.get $sp)))
          (local.set $k (i64.xor (local.get $d) (i64.load offset=16 (local.get $ss))))
          (local.set $a3 (i64.add (local.get $a3) (local.get $d)))
          (local.set $a2 (i64.add (local.get $a2)
            (i64.mul (i64.and (local.get $k) (i64.const 0xffffffff)) (i64.shr_u (local.get $k) (i64.const 32)))))
          (local.set $d (i64.load offset=24 (local.get $sp)))
          (local.set $k (i64.xor (local.get $d) (i64.load offset=24 (local.get $ss))))
          (local.set $a2 (i64.add (local.get $a2) (local.get $d)))
          (local.set $a3 (i64.add (local.get $a3)
            (i64.mul (i64.and (local.get $k) (i64.const 0xffffffff)) (i64.shr_u (local.get $k) (i64.const 32)))))
          (local.set $d (i64.load offset=32 (local.get $sp)))
          (local.set $k (i64.xor (local.get $d) (i64.load offset=32 (local.get $ss))))
          (local.set $a5 (i64.add (local.get $a5) (local.get $d)))
          (local.set $a4 (i64.add (local.get $a4)
            (i64.mul (i64.and (local.get $k) (i64.const 0xffffffff)) (i64.shr_u (local.get $k) (i64.const 32)))))
          (local.set $d (i64.load offset=40 (local.get $sp)))
          (local.set $k (i64.xor (local.get $d) (i64.load offset=40 (local.get $ss))))
          (local.set $a4 (i64.add (local.get $a4) (local.get $d)))
          (local.set $a5 (i64.add (local.get $a5)
            (i64.mul (i64.and (local.get $k) (i64.const 0xffffffff)) (i64.shr_u (local.get $k) (i64.const 32)))))
          (local.set $d (i64.load offset=48 (local.get $sp)))
          (local.set $k (i64.xor (local.get $d) (i64.load offset=48 (local.get $ss))))
          (local.set $a7 (i64.add (local.get $a7) (local.get $d)))
          (local.set $a6 (i64.add (local.get $a6)
            (i64.mul (i64.and (local.get $k) (i64.const 0xffffffff)) (i64.shr_u (local.get $k) (i64.const 32)))))
          (local.set $d (i64.load offset=56 (local.get $sp)))
          (local.set $k (i64.xor (local.get $d) (i64.load offset=56 (local.get $ss))))
          (local.set $a6 (i64.add (local.get $a6) (local.get $d)))
          (local.set $a7 (i64.add (local.get $a7)
            (i64.mul (i64.and (local.get $k) (i64.const 0xffffffff)) (i64.shr_u (local.get $k) (i64.const 32)))))
          ;; after each full 1024-byte block: acc = (acc ^ (acc >> 47) ^ secret[128 + 8n..]) * PRIME32_1
          (if (i32.and
                (i32.lt_u (local.get $i) (local.get $full))
                (i32.eq (i32.and (local.get $i) (i32.const 15)) (i32.const 15)))
            (then
              (local.set $a0 (i64.mul (i64.xor (i64.xor (local.get $a0) (i64.shr_u (local.get $a0) (i64.const 47)))
                (i64.load (i32.const 320))) (i64.const 0x9E3779B1)))
              (local.set $a1 (i64.mul (i64.xor (i64.xor (local.get $a1) (i64.shr_u (local.get $a1) (i64.const 47)))
                (i64.load (i32.const 328))) (i64.const 0x9E3779B1)))
              (local.set $a2 (i64.mul (i64.xor (i64.xor (local.get $a2) (i64.shr_u (local.get $a2) (i64.const 47)))
                (i64.load (i32.const 336))) (i64.const 0x9E3779B1)))
              (local.set $a3 (i64.mul (i64.xor (i64.xor (local.get $a3) (i64.shr_u (local.get $a3) (i64.const 47)))
                (i64.load (i32.const 344))) (i64.const 0x9E3779B1)))
              (local.set $a4 (i64.mul (i64.xor (i64.xor (local.get $a4) (i64.shr_u (local.get $a4) (i64.const 47)))
                (i64.load (i32.const 352))) (i64.const 0x9E3779B1)))
              (local.set $a5 (i64.mul (i64.xor (i64.xor (local.get $a5) (i64.shr_u (local.get $a5) (i64.const 47)))
                (i64.load (i32.const 360))) (i64.const 0x9E3779B1)))
              (local.set $a6 (i64.mul (i64.xor (i64.xor (local.get $a6) (i64.shr_u (local.get $a6) (i64.const 47)))
                (i64.load (i32.const 368))) (i64.const 0x9E3779B1)))
              (local.set $a7 (i64.mul (i64.xor (i64.xor (local.get $a7) (i64.shr_u (local.get $a7) (i64.const 47)))
                (i64.load (i32.const 376))) (i64.const 0x9E3779B1)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $stripe (i32.le_u (local.get $i) (local.get $stripes))))
        ;; merge: len * PRIME64_1 + sum of mulfold(acc pair ^ secret[11 + 16j..]), then avalanche
        (local.set $result (i64.mul (i64.extend_i32_u (local.get $len)) (i64.const 0x9E3779B185EBCA87)))
        (local.set $result (i64.add (local.get $result)
          (call $mulfold (i64.xor (local.get $a0) (i64.load (i32.const 203))) (i64.xor (local.get $a1) (i64.load (i32.const 211))))))
        (local.set $result (i64.add (local.get $result)
          (call $mulfold (i64.xor (local.get $a2) (i64.load (i32.const 219))) (i64.xor (local.get $a3) (i64.load (i32.const 227))))))
        (local.set $result (i64.add (local.get $result)
          (call $mulfold (i64.xor (local.get $a4) (i64.load (i32.const 235))) (i64.xor (local.get $a5) (i64.load (i32.const 243))))))
        (local.set $result (i64.add (local.get $result)
          (call $mulfold (i64.xor (local.get $a6) (i64.load (i32.const 251))) (i64.xor (local.get $a7) (i64.load (i32.const 259))))))
        (i64.store (local.get $out) (call $avalanche (local.get $result)))
        (local.set $p (i32.add (local.get $p) (local.get $len)))
        (local.set $out (i32.add (local.get $out) (i32.const 8)))
        (br $each))))

  ;; ---------------------------------------------------------------- entry points

  ;; Hashes `count` consecutive inputs of `len` bytes (any length) starting at `src` and stores each
  ;; u64 little-endian (i.e. packed [lo, hi] u32 pairs) at `dst`.
  (func $hash_blocks (export "hash_blocks")
    (param $src i32) (param $len i32) (param $count i32) (param $dst i32)
    (param $seed_lo i32) (param $seed_hi i32)
    (local $seed i64)
    (local.set $seed
      (i64.or (i64.extend_i32_u (local.get $seed_lo))
        (i64.shl (i64.extend_i32_u (local.get $seed_hi)) (i64.const 32))))
    (if (i32.lt_u (local.get $len) (i32.const 4))
      (then (return (call $blocks_0to3
        (local.get $src) (local.get $len) (local.get $count) (local.get $dst) (local.get $seed)))))
    (if (i32.le_u (local.get $len) (i32.const 8))
      (then (return (call $blocks_4to8
        (local.get $src) (local.get $len) (local.get $count) (local.get $dst) (local.get $seed)))))
    (if (i32.le_u (local.get $len) (i32.const 16))
      (then (return (call $blocks_9to16
        (local.get $src) (local.get $len) (local.get $count) (local.get $dst) (local.get $seed)))))
    (if (i32.le_u (local.get $len) (i32.const 128))
      (then (return (call $blocks_17to128
        (local.get $src) (local.get $len) (local.get $count) (local.get $dst) (local.get $seed) (i32.const 0)))))
    (if (i32.le_u (local.get $len) (i32.const 240))
      (then (return (call $blocks_129to240
        (local.get $src) (local.get $len) (local.get $count) (local.get $dst) (local.get $seed)))))
    (call $init_custom_secret (local.get $seed))
    (call $blocks_long (local.get $src) (local.get $len) (local.get $count) (local.get $dst)))

;; hash_blocks to `dst`, plus the rolling sequence hashes of those local hashes to `seq` (as
  ;; hash_sequence(dst, count, seq)). Inputs of 17..128 bytes compute both in one loop; `seq` must not
  ;; overlap `dst` or `src`.
  (func (export "hash_prompt")
    (param $src i32) (param $len i32) (param $count i32) (param $dst i32) (param $seq i32)
    (param $seed_lo i32) (param $seed_hi i32)
    (if (i32.and (i32.gt_u (local.get $len) (i32.const 16)) (i32.le_u (local.get $len) (i32.const 128)))
      (then
        (return (call $blocks_17to128
          (local.get $src) (local.get $len) (local.get $count) (local.get $dst)
          (i64.or (i64.extend_i32_u (local.get $seed_lo))
            (i64.shl (i64.extend_i32_u (local.get $seed_hi)) (i64.const 32)))
          (local.get $seq)))))
    (call $hash_blocks (local.get $src) (local.get $len) (local.get $count) (local.get $dst)
      (local.get $seed_lo) (local.get $seed_hi))
    (call $hash_sequence (local.get $dst) (local.get $count) (local.get $seq)
      (local.get $seed_lo) (local.get $seed_hi)))

  ;; Rolling sequence hashes over `count` local hashes at `src` (u64 each), written to `dst`:
  ;; dst[0] = src[0]; dst[i] = xxh3_64(LE64(dst[i-1]) || LE64(src[i]), seed) (the 9..16-byte path
  ;; with len 16, inlined as in $blocks_9to16). `dst` may equal `src`.
  (func $hash_sequence (export "hash_sequence")
    (param $src i32) (param $count i32) (param $dst i32) (param $seed_lo i32) (param $seed_hi i32)
    (local $seed i64) (local $prev i64) (local $lo i64) (local $hi i64) (local $x i64)
    (local $ll i64) (local $lh i64) (local $cross i64) (local $flip1 i64) (local $flip2 i64)
    (local $in i32) (local $out i32) (local $stop i32)
    (if (i32.eqz (local.get $count)) (then (return)))
    (local.set $seed
      (i64.or (i64.extend_i32_u (local.get $seed_lo))
        (i64.shl (i64.extend_i32_u (local.get $seed_hi)) (i64.const 32))))
    (local.set $flip1 (i64.add (i64.xor (i64.load (i32.const 24)) (i64.load (i32.const 32))) (local.get $seed)))
    (local.set $flip2 (i64.sub (i64.xor (i64.load (i32.const 40)) (i64.load (i32.const 48))) (local.get $seed)))
    (local.set $prev (i64.load (local.get $src)))
    (i64.store (local.get $dst) (local.get $prev))
    (local.set $in (i32.add (local.get $src) (i32.const 8)))
    (local.set $out (i32.add (local.get $dst) (i32.const 8)))
    (local.set $stop (i32.add (local.get $dst) (i32.shl (local.get $count) (i32.const 3))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $out) (local.get $stop)))
        (local.set $lo (i64.xor (local.get $prev) (local.get $flip1)))
        (local.set $hi (i64.xor (i64.load (local.get $in)) (local.get $flip2)))
        ;; swap64(lo)
        (local.set $x
          (i64.or
            (i64.and (i64.shr_u (local.get $lo) (i64.const 8)) (i64.const 0x00ff00ff00ff00ff))
            (i64.shl (i64.and (local.get $lo) (i64.const 0x00ff00ff00ff00ff)) (i64.const 8))))
        (local.set $x
          (i64.or
            (i64.and (i64.shr_u (local.get $x) (i64.const 16)) (i64.const 0x0000ffff0000ffff))
            (i64.shl (i64.and (local.get $x) (i64.const 0x0000ffff0000ffff)) (i64.const 16))))
        ;; prev = 16 + swap64(lo) + hi + mulfold(lo, hi)
        (local.set $prev
          (i64.add (i64.add (i64.const 16) (i64.rotl (local.get $x) (i64.const 32))) (local.get $hi)))
        ;; mulfold(lo, hi)
        (local.set $ll
          (i64.mul (i64.and (local.get $lo) (i64.const 0xffffffff)) (i64.and (local.get $hi) (i64.const 0xffffffff))))
        (local.set $lh
          (i64.mul (i64.and (local.get $lo) (i64.const 0xffffffff)) (i64.shr_u (local.get $hi) (i64.const 32))))
        (local.set $cross
          (i64.add
            (i64.add (i64.shr_u (local.get $ll) (i64.const 32)) (i64.and (local.get $lh) (i64.const 0xffffffff)))
            (i64.mul (i64.shr_u (local.get $lo) (i64.const 32)) (i64.and (local.get $hi) (i64.const 0xffffffff)))))
        (local.set $prev
          (i64.add (local.get $prev)
            (i64.xor
              (i64.mul (local.get $lo) (local.get $hi))
              (i64.add
                (i64.add
                  (i64.mul (i64.shr_u (local.get $lo) (i64.const 32)) (i64.shr_u (local.get $hi) (i64.const 32)))
                  (i64.shr_u (local.get $lh) (i64.const 32)))
                (i64.shr_u (local.get $cross) (i64.const 32))))))
        ;; avalanche
        (local.set $prev (i64.xor (local.get $prev) (i64.shr_u (local.get $prev) (i64.const 37))))
        (local.set $prev (i64.mul (local.get $prev) (i64.const 0x165667919E3779F9)))
        (local.set $prev (i64.xor (local.get $prev) (i64.shr_u (local.get $prev) (i64.const 32))))
        (i64.store (local.get $out) (local.get $prev))
        (local.set $in (i32.add (local.get $in) (i32.const 8)))
        (local.set $out (i32.add (local.get $out) (i32.const 8)))
        (br $each))))
)
