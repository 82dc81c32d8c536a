#!/usr/bin/env bash
# --kv-type on the commands: `info` sizes the cache by element type (f32 4,
# f16/bf16 2, q8_0 34/32 bytes per element; f16 by default), `eval` runs with
# each type (f16/bf16/q8_0 next-token distributions close to f32's, not equal),
# `run -v` names the type, `bench --json` reports it, and an unknown type is a
# clear error.
# No `set -e`: a failed check is counted and reported, the script goes on.
set -uo pipefail
g4="$1"; work="$2"
rm -rf "$work"; mkdir -p "$work"
pass=0; fail=0
check() {  # check NAME COND-EXIT-STATUS
  if [ "$2" -eq 0 ]; then pass=$((pass+1)); echo "ok   $1"; else fail=$((fail+1)); echo "FAIL $1"; fi
}
model="$work/e4b.gguf"
"$g4" make-test-model --arch e4b --scale tiny --seed 5 --out "$model" >/dev/null || exit 1

# info: bytes scale with the element size; the default is f16.
kvbytes() { "$g4" info "$model" --ctx 4096 --json "$@" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["kv_cache_dtype"], j["kv_cache_bytes"])'; }
read -r d_def b_def < <(kvbytes)
read -r d32 b32 < <(kvbytes --kv-type f32)
read -r d16 b16 < <(kvbytes --kv-type f16)
read -r dbf bbf < <(kvbytes --kv-type bf16)
read -r dq8 bq8 < <(kvbytes --kv-type q8_0)
echo "info kv bytes at ctx 4096: default $d_def $b_def, f32 $b32, f16 $b16, bf16 $bbf, q8_0 $bq8"
[ "$d_def" = f16 ] && [ "$b_def" = "$b16" ]; check "info default is f16" $?
[ "$d32" = f32 ] && [ $((b32)) -eq $((2 * b16)) ] && [ "$b16" = "$bbf" ] && [ $((bq8 * 32)) -eq $((b32 / 4 * 34)) ]
check "info sizes: f32 = 2 x f16 = 2 x bf16, q8_0 = 34/32 per element" $?
out=$("$g4" info "$model" --kv-type q8_0); grep -q "q8_0 K and V" <<<"$out"; check "info text names the type" $?

# eval: every type runs; reduced precision stays close to f32 but is not f32.
ids="2,17,300,41,999,5,77,123,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37"
for t in f32 f16 bf16 q8_0; do
  "$g4" eval -m "$model" --tokens "$ids" --all --json --top 1 --kv-type "$t" --dump-logprobs "$work/$t.bin" >/dev/null ||
    { echo "FAIL eval --kv-type $t"; exit 1; }
done
for t in f16 bf16 q8_0; do
  python3 - "$work/f32.bin" "$work/$t.bin" <<'EOF'
import array, math, sys
a = array.array("f"); b = array.array("f")
a.frombytes(open(sys.argv[1], "rb").read()); b.frombytes(open(sys.argv[2], "rb").read())
assert len(a) == len(b) and len(a) > 0
d = max(abs(x - y) for x, y in zip(a, b))
print(f"  max |dlogprob| vs f32: {d:.3g}")
sys.exit(0 if 0 < d < 1.0 else 1)
EOF
  check "eval --kv-type $t close to f32, not identical" $?
done

# run -v and bench report the type.
err=$("$g4" run -m "$model" -p "hello" -n 2 --temp 0 -v --kv-type bf16 2>&1 >/dev/null)
grep -q "KV cache: bf16" <<<"$err"; check "run -v prints the cache type" $?
"$g4" bench -m "$model" -p 8 -n 2 -r 1 --kv-type q8_0 --json | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["kv_type"] == "q8_0" else 1)'
check "bench --json reports kv_type" $?

# Unknown types fail clearly.
if out=$("$g4" eval -m "$model" --tokens 2,5 --kv-type q4_0 2>&1); then r=1; else r=0; fi
[ $r -eq 0 ] && grep -q "unknown KV cache type 'q4_0' (choose f32|f16|bf16|q8_0)" <<<"$out"; check "unknown type is an error" $?

rm -rf "$work"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
