#!/usr/bin/env bash
# `gemma4 perplexity` against an independent computation: the text is
# tokenized with `gemma4 tokenize`, each chunk (first token replaced by
# <bos>) is evaluated with `gemma4 eval --all --dump-logprobs`, and python
# computes exp(mean NLL) over positions ctx/2 .. ctx-2 of every chunk from
# those log-probabilities. Also: --kl-base of a model against itself gives
# KL 0 and 100 % top-1 agreement; a text shorter than two chunks is an error.
set -euo pipefail
g4="$1"; work="$2"
rm -rf "$work"; mkdir -p "$work"
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
m="$work/m.gguf"
"$g4" make-test-model --arch e2b --scale tiny --format gguf --type f32 --seed 4 --out "$m" >/dev/null
txt="$work/text.txt"
python3 - "$txt" <<'PY'
import sys
words = "the model reads a long text and the second half of every chunk is scored against what it predicted".split()
out, x = [], 1
for i in range(160):
    x = (x * 1103515245 + 12345) % 2**31
    out.append(words[x % len(words)])
open(sys.argv[1], "w").write(" ".join(out) + "\n")
PY
ctx=32
"$g4" perplexity -m "$m" -f "$txt" --ctx $ctx --json -t 2 >"$work/ppl.json" 2>"$work/ppl.err"
"$g4" tokenize -m "$m" --file "$txt" --bos --json >"$work/ids.json"
nchunks=$(python3 -c "import json; print(len(json.load(open('$work/ids.json'))['ids']) // $ctx)")
for ((c = 0; c < nchunks; c++)); do
  chunk=$(python3 -c "import json; ids = json.load(open('$work/ids.json'))['ids'][$c*$ctx:($c+1)*$ctx]; ids[0] = 2; print(','.join(map(str, ids)))")
  "$g4" eval -m "$m" --tokens "$chunk" --all --top 1 --json -t 2 --dump-logprobs "$work/lp$c.bin" >"$work/eval$c.json"
done
if python3 - "$work" "$nchunks" "$ctx" <<'PY'
import json, math, struct, sys
work, nchunks, ctx = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ids = json.load(open(f"{work}/ids.json"))["ids"]
ppl = json.load(open(f"{work}/ppl.json"))
nll, n = 0.0, 0
for c in range(nchunks):
    V = json.load(open(f"{work}/eval{c}.json"))["n_vocab"]
    raw = open(f"{work}/lp{c}.bin", "rb").read()
    chunk = ids[c * ctx:(c + 1) * ctx]
    for pos in range(ctx // 2, ctx - 1):
        lp = struct.unpack_from("<f", raw, 4 * (pos * V + chunk[pos + 1]))[0]
        nll -= lp
        n += 1
mine = math.exp(nll / n)
print(f"independent PPL {mine:.6f} over {n} tokens; gemma4 perplexity {ppl['ppl']:.6f} over {ppl['n_scored']}")
assert n == ppl["n_scored"] and ppl["n_chunks"] == nchunks
assert abs(mine - ppl["ppl"]) <= 1e-5 * mine
PY
then ok "PPL = exp(mean NLL) from eval --all ($nchunks chunks)"; else bad "PPL differs"; fi
if grep -q "^perplexity: PPL" "$work/ppl.err"; then ok "final progress line"; else bad "stderr: $(cat "$work/ppl.err")"; fi

"$g4" perplexity -m "$m" -f "$txt" --ctx $ctx --kl-base "$m" --json -t 2 >"$work/kl.json" 2>/dev/null
if python3 -c "
import json; j = json.load(open('$work/kl.json'))
assert j['kl_mean'] == 0 and j['kl_max'] == 0 and j['same_top'] == 1, j
"; then ok "KL vs itself = 0, same top 100 %"; else bad "KL vs itself: $(cat "$work/kl.json")"; fi
"$g4" perplexity -m "$m" -f "$txt" --ctx $ctx --kl-base "$m" -t 2 2>/dev/null >"$work/kl.txt"
if grep -q "^Mean    KLD:   0.000000" "$work/kl.txt" && grep -q "^Same top p: 100.000" "$work/kl.txt"; then ok "KL text report"
else bad "KL text report: $(cat "$work/kl.txt")"; fi

echo "short text" >"$work/short.txt"
if "$g4" perplexity -m "$m" -f "$work/short.txt" --ctx $ctx >/dev/null 2>"$work/e.txt"; then bad "short text: exit 0"
elif grep -q "^error: .*at least 64 tokens" "$work/e.txt"; then ok "short text: $(cat "$work/e.txt")"
else bad "short text message: $(cat "$work/e.txt")"; fi
if "$g4" perplexity -m "$m" -f "$work/none.txt" >/dev/null 2>"$work/e.txt"; then bad "missing file: exit 0"
elif grep -q "^error: .*none.txt" "$work/e.txt"; then ok "missing file"; else bad "missing file: $(cat "$work/e.txt")"; fi
rm -rf "$work"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
