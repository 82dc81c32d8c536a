#!/usr/bin/env bash
# `gemma4 convert` and `gemma4 quantize` through the CLI, every tiny family:
#   * the converted GGUF holds the HF folder's weights (`info --checksums`:
#     one checksum over all tensor values, rope_freqs excluded) and gives the
#     same next-token log-probabilities (`eval --json`, every position,
#     top 8: same ids, |Δ logprob| <= 1e-4);
#   * quantize q8_0 of the converted file records file type 7 and Q8_0 tensors
#     and still evaluates;
#   * bad input (missing folder, a GGUF given to convert, unknown type,
#     unwritable output, corrupt GGUF, requantizing without the flag) exits
#     non-zero with an "error:" line and leaves no output file.
set -euo pipefail
g4="$1"; work="$2"
rm -rf "$work"; mkdir -p "$work"
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
sum() { "$g4" info "$1" --checksums --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["weights_checksum"])'; }
ids="2,17,300,41,999,5,77,123,8,64,640,3,12,900,33,21,18,55,101,7"
for arch in e2b e4b 26b-a4b 31b; do
  hf="$work/$arch-hf"; out="$work/$arch.gguf"
  "$g4" make-test-model --arch $arch --scale tiny --format hf --type f32 --seed 21 --out "$hf" >/dev/null
  if ! "$g4" convert "$hf" -o "$out" --type f32 2>"$work/stderr.txt"; then bad "$arch convert failed: $(cat "$work/stderr.txt")"; continue; fi
  # Not a terminal: no bar, one plain final line.
  if grep -q "^convert: wrote $out (F32" "$work/stderr.txt" && [ "$(wc -l <"$work/stderr.txt")" -eq 1 ]; then ok "$arch progress line"
  else bad "$arch stderr: $(cat "$work/stderr.txt")"; fi
  a=$(sum "$hf"); b=$(sum "$out")
  if [ "$a" = "$b" ]; then ok "$arch checksums hf=gguf=$a"; else bad "$arch checksums hf=$a gguf=$b"; fi
  "$g4" eval -m "$hf" --tokens "$ids" --all --top 8 --json -t 2 >"$work/a.json"
  "$g4" eval -m "$out" --tokens "$ids" --all --top 8 --json -t 2 >"$work/b.json"
  if python3 - "$work/a.json" "$work/b.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))["positions"]; b = json.load(open(sys.argv[2]))["positions"]
assert len(a) == len(b) == 20
worst = 0.0
for pa, pb in zip(a, b):
    assert [t["id"] for t in pa["top"]] == [t["id"] for t in pb["top"]], (pa, pb)
    worst = max(worst, max(abs(x["logprob"] - y["logprob"]) for x, y in zip(pa["top"], pb["top"])))
print(f"max |dlogprob| {worst:.3g}")
assert worst <= 1e-4
PY
  then ok "$arch eval hf = converted"; else bad "$arch eval differs"; fi
  q="$work/$arch-q8.gguf"
  "$g4" quantize "$out" "$q" q8_0 -q
  if "$g4" info "$q" --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["tensor_types"].get("Q8_0", 0) > 10, j["tensor_types"]
' && python3 - "$q" <<'PY'
import struct, sys
# general.file_type of the quantized file (a u32 GGUF key): 7 = MOSTLY_Q8_0.
data = open(sys.argv[1], "rb").read(1 << 20)
k = b"general.file_type"
i = data.index(k) + len(k)
vtype, val = struct.unpack_from("<II", data, i)
assert vtype == 4 and val == 7, (vtype, val)
PY
  then ok "$arch quantize q8_0"; else bad "$arch quantize q8_0"; fi
  "$g4" eval -m "$q" --tokens "$ids" --top 3 --json -t 2 >/dev/null && ok "$arch q8_0 evaluates" || bad "$arch q8_0 eval"
done

# ---- bad input --------------------------------------------------------------------
hf="$work/e2b-hf"; gg="$work/e2b.gguf"
expect_fail() {  # expect_fail NAME OUTPUT_PATH NEEDLE -- command...
  local name="$1" outp="$2" needle="$3"; shift 4
  if "$@" >"$work/o.txt" 2>"$work/e.txt"; then bad "$name: exit 0"; return; fi
  if ! grep -q "^error: .*$needle" "$work/e.txt"; then bad "$name: message: $(cat "$work/e.txt")"; return; fi
  if [ -e "$outp" ] || ls "$(dirname "$outp")" 2>/dev/null | grep -q '\.tmp'; then bad "$name: output left behind"; return; fi
  ok "$name: $(head -c 160 "$work/e.txt")"
}
expect_fail "convert missing dir" "$work/x1.gguf" "does not exist" -- "$g4" convert "$work/none" -o "$work/x1.gguf"
expect_fail "convert gguf input" "$work/x2.gguf" "GGUF" -- "$g4" convert "$gg" -o "$work/x2.gguf"
expect_fail "convert unknown type" "$work/x3.gguf" "unknown --type" -- "$g4" convert "$hf" -o "$work/x3.gguf" --type q2_z
expect_fail "convert unwritable" "$gg/x4.gguf" "x4.gguf" -- "$g4" convert "$hf" -o "$gg/x4.gguf"
head -c 3000 "$gg" >"$work/cut.gguf"
expect_fail "quantize corrupt" "$work/x5.gguf" "cut.gguf" -- "$g4" quantize "$work/cut.gguf" "$work/x5.gguf" q8_0
expect_fail "quantize unknown type" "$work/x6.gguf" "unknown type" -- "$g4" quantize "$gg" "$work/x6.gguf" q4_x
expect_fail "quantize requant" "$work/x7.gguf" "allow-requantize" -- "$g4" quantize "$work/e2b-q8.gguf" "$work/x7.gguf" q4_0
expect_fail "quantize unwritable" "$gg/x8.gguf" "x8.gguf" -- "$g4" quantize "$gg" "$gg/x8.gguf" q8_0
rm -rf "$work"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
