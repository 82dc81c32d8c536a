#!/usr/bin/env bash
# `gemma4 bench`: the JSON keys bench/compare reads are there and hold finite
# positive numbers, --membw reports a positive bandwidth (and, with a model, the
# decode roofline), and bad arguments fail with a clear message. Timing values
# are only checked for being finite and > 0: the machine may be busy.
set -uo pipefail
g4="$1"; work="$2"
rm -rf "$work"; mkdir -p "$work"
pass=0; fail=0
ok() { pass=$((pass+1)); echo "ok   $1"; }
bad() { fail=$((fail+1)); echo "FAIL $1"; }

model="$work/e2b-q8_0.gguf"
"$g4" make-test-model --arch e2b --scale tiny --format gguf --type q8_0 --seed 1 --out "$model" >/dev/null || { echo "FAIL make-test-model"; exit 1; }

# check NAME JSON PYTHON-EXPR: the expression (over the parsed object `j`) must hold.
check() {
  if python3 -c 'import json,math,sys; j=json.loads(sys.argv[1]); pos=lambda k: isinstance(j.get(k),(int,float)) and math.isfinite(j[k]) and j[k]>0; sys.exit(0 if eval(sys.argv[2]) else 1)' "$2" "$3"; then
    ok "$1"
  else
    bad "$1: $3 does not hold for $2"
  fi
}

out=$("$g4" bench -m "$model" -p 16 -n 4 -r 1 --json) || bad "bench --json exited $?"
check "bench --json: the four keys are finite and positive" "$out" \
  'all(pos(k) for k in ("prefill_tps","decode_tps","ttft_ms","peak_rss_mb"))'
check "bench --json: spreads, setup and model size" "$out" \
  'all(pos(k) for k in ("prefill_tps_min","prefill_tps_max","decode_tps_min","decode_tps_max","ttft_ms_min","ttft_ms_max","model_bytes")) and j["p"]==16 and j["n"]==4 and j["runs"]==1 and j["threads"]>=1 and isinstance(j["isa"],str) and len(j["isa"])>0'
check "bench --json: min <= median <= max" "$out" \
  'all(j[k+"_min"]<=j[k]<=j[k+"_max"] for k in ("prefill_tps","decode_tps","ttft_ms"))'
size=$(stat -c %s "$model")
check "bench --json: model_bytes is the file size" "$out" "j['model_bytes']==$size"

out=$("$g4" bench -m "$model" -p 40 -n 3 -r 2 -t 1 --batch 16 --ctx 100 --json) || bad "bench -t 1 exited $?"
check "bench -t 1 --batch 16 --ctx 100: honoured" "$out" 'j["threads"]==1 and j["batch"]==16 and j["ctx"]==100 and j["runs"]==2 and pos("prefill_tps")'

out=$("$g4" bench --membw -r 2 --json) || bad "bench --membw exited $?"
check "bench --membw --json: positive bandwidth" "$out" 'pos("membw_gbps") and j["membw_gbps_min"]<=j["membw_gbps"]<=j["membw_gbps_max"] and "prefill_tps" not in j'

out=$("$g4" bench --membw --membw-mib 64 -m "$model" -p 16 -n 4 -r 1 --json) || bad "bench --membw -m exited $?"
check "bench --membw -m: roofline keys" "$out" \
  'all(pos(k) for k in ("membw_gbps","decode_weight_bytes","decode_bound_tps","decode_bound_share","decode_tps")) and abs(j["decode_bound_tps"]-j["membw_gbps"]*1e9/j["decode_weight_bytes"])<=1e-6*j["decode_bound_tps"]'

text=$("$g4" bench -m "$model" -p 16 -n 4 -r 1) || bad "bench (text) exited $?"
if grep -q '^prefill .*tok/s' <<<"$text" && grep -q '^decode .*tok/s' <<<"$text" && grep -q '^peak RSS' <<<"$text"; then ok "bench text output"; else bad "bench text output: $text"; fi

# expect_error NAME NEEDLE ARGS...: non-zero exit and NEEDLE on stderr.
expect_error() {
  local name="$1" needle="$2"; shift 2
  local err rc
  err=$("$g4" "$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" -ne 0 ] && grep -qF -- "$needle" <<<"$err"; then ok "$name"; else bad "$name: rc=$rc stderr: $err"; fi
}
expect_error "no model"             "give -m MODEL"          bench -p 16
expect_error "-p 0"                 "-p must be at least 1"  bench -m "$model" -p 0
expect_error "-n 0"                 "-n must be at least 1"  bench -m "$model" -n 0
expect_error "-r 0"                 "-r must be at least 1"  bench -m "$model" -r 0
expect_error "-t -1"                "must not be negative"   bench -m "$model" -t -1
expect_error "missing model file"   "does not exist"         bench -m "$work/nope.gguf" -p 16 -n 4
expect_error "context too small"    "do not fit"             bench -m "$model" -p 16 -n 4 --ctx 10

rm -rf "$work"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
