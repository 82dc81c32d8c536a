#!/usr/bin/env bash
# `gemma4 info --checksums`: for every family and dtype, the GGUF and the HF
# folder that make-test-model writes from one seed hold identical weights, and a
# different seed gives different weights.
set -euo pipefail
g4="$1"; work="$2"
rm -rf "$work"; mkdir -p "$work"
pass=0; fail=0
sum() { "$g4" info "$1" --checksums --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["weights_checksum"])'; }
for arch in e2b e4b 26b-a4b 31b; do
  for type in f32 bf16; do
    for fmt in gguf hf; do
      "$g4" make-test-model --arch $arch --scale tiny --format $fmt --type $type --seed 11 --out "$work/$arch-$type.$fmt" >/dev/null
    done
    "$g4" make-test-model --arch $arch --scale tiny --format gguf --type $type --seed 12 --out "$work/$arch-$type-other.gguf" >/dev/null
    a=$(sum "$work/$arch-$type.gguf"); b=$(sum "$work/$arch-$type.hf"); c=$(sum "$work/$arch-$type-other.gguf")
    if [ "$a" = "$b" ] && [ "$a" != "$c" ]; then pass=$((pass+1)); echo "ok   $arch $type gguf=hf=$a other-seed=$c"
    else fail=$((fail+1)); echo "FAIL $arch $type gguf=$a hf=$b other-seed=$c"; fi
  done
done
rm -rf "$work"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
