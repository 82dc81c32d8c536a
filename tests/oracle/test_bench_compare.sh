#!/usr/bin/env bash
# bench/compare end to end on two tiny generated models (-p 16 -n 4 -r 1):
# every table row holds positive numbers for both engines (llama.cpp through
# node-llama-cpp, and gemma4 bench), and --out replaces a stale block between
# the markers while keeping the rest of the document. Timings are only checked
# for being positive: the machine may be busy.
# Usage: test_bench_compare.sh GEMMA4_BINARY WORKDIR. Exit 77 (skip) without
# node or node-llama-cpp, unless CI=true or GEMMA4_REQUIRE_ORACLES=1.
set -uo pipefail
g4="$1"; work="$2"
root="$(cd "$(dirname "$0")/../.." && pwd)"
if ! command -v node >/dev/null || [ ! -f "$root/tests/oracle/node_modules/node-llama-cpp/package.json" ]; then
  if [ "${CI:-}" = true ] || [ "${GEMMA4_REQUIRE_ORACLES:-}" = 1 ]; then
    echo "FAIL: node or node-llama-cpp missing (run scripts/setup-oracles.sh)"; exit 1
  fi
  echo "SKIP: node or node-llama-cpp missing (run scripts/setup-oracles.sh)"; exit 77
fi
rm -rf "$work"; mkdir -p "$work"
pass=0; fail=0
ok() { pass=$((pass+1)); echo "ok   $1"; }
bad() { fail=$((fail+1)); echo "FAIL $1"; }

for t in q8_0 f32; do
  "$g4" make-test-model --arch e2b --scale tiny --format gguf --type $t --seed 1 --out "$work/e2b-$t.gguf" >/dev/null \
    || { echo "FAIL make-test-model $t"; exit 1; }
done
doc="$work/benchmarks.md"
printf '# Benchmarks\n\nintro stays\n\n<!-- bench/compare:begin -->\nSTALE TABLE\n<!-- bench/compare:end -->\n\ntail stays\n' > "$doc"

out=$("$root/bench/compare" -m "$work/e2b-q8_0.gguf,$work/e2b-f32.gguf" -p 16 -n 4 -t 1 -r 1 --gemma4 "$g4" --out "$doc") \
  || { echo "FAIL bench/compare exited non-zero"; echo "$out"; exit 1; }
echo "$out"

# Rows of the table: model, size, threads, then prefill llama/ours/ratio, decode llama/ours/ratio,
# decode bound (shares), RSS llama/ours.
if python3 - "$out" <<'PY'
import re, sys
rows = [l for l in sys.argv[1].splitlines() if l.startswith("| e2b-")]
assert [r.split("|")[1].strip() for r in rows] == ["e2b-q8_0.gguf", "e2b-f32.gguf"], rows
for r in rows:
    c = [x.strip() for x in r.strip().strip("|").split("|")]
    assert len(c) == 12, c
    assert c[2] == "1", c
    num = lambda s: float(re.sub(r"( MiB|×)$", "", s))
    for i in (3, 4, 5, 6, 7, 8, 10, 11):
        assert num(c[i]) > 0, (i, c)
    # Decode bound "B (L %, O %)": L and O are the engines' decode tok/s as shares of B.
    m = re.fullmatch(r"([\d.]+) \((\d+) %, (\d+) %\)", c[9])
    assert m, c[9]
    bound = float(m.group(1))
    assert bound > 0
    assert abs(int(m.group(2)) - 100 * num(c[6]) / bound) <= 1 + 0.01 * int(m.group(2)), c
    assert abs(int(m.group(3)) - 100 * num(c[7]) / bound) <= 1 + 0.01 * int(m.group(3)), c
    # The ratio columns are ours / llama.cpp of the printed medians (rounded).
    for l, o, q in ((3, 4, 5), (6, 7, 8)):
        assert abs(num(c[q]) - num(c[o]) / num(c[l])) <= 0.01 + 0.01 * num(c[q]), c
PY
then ok "table: both models, positive numbers for both engines"; else bad "table rows"; fi

if grep -q '^intro stays$' "$doc" && grep -q '^tail stays$' "$doc" && ! grep -q STALE "$doc" \
   && [ "$(grep -c 'bench/compare:begin' "$doc")" = 1 ] && grep -q '^| e2b-f32.gguf |' "$doc" \
   && grep -q '^Machine: .*physical cores.*GiB RAM' "$doc" && grep -q '^Command: `bench/compare -m ' "$doc" \
   && grep -q '^Date: 20' "$doc"; then
  ok "--out replaced the block, kept the rest"
else
  bad "--out document:"; cat "$doc"
fi

err=$("$root/bench/compare" -p 16 2>&1 >/dev/null); rc=$?
if [ "$rc" -ne 0 ] && grep -q 'give -m MODEL' <<<"$err"; then ok "no -m: clear error"; else bad "no -m: rc=$rc $err"; fi
err=$("$root/bench/compare" -m "$work/nope.gguf" 2>&1 >/dev/null); rc=$?
if [ "$rc" -ne 0 ] && grep -q 'does not exist' <<<"$err"; then ok "missing model: clear error"; else bad "missing model: rc=$rc $err"; fi
err=$("$root/bench/compare" -m "$work/e2b-f32.gguf" -p 0 2>&1 >/dev/null); rc=$?
if [ "$rc" -ne 0 ] && grep -q 'positive integer' <<<"$err"; then ok "-p 0: clear error"; else bad "-p 0: rc=$rc $err"; fi

rm -rf "$work"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
