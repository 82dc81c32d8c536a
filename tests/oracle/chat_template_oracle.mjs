#!/usr/bin/env node
// Chat-template oracle: renders every conversation of tests/oracle/chat_cases.json
// with the official Gemma 4 chat template (llama.cpp models/templates/
// google-gemma-4-31B-it.jinja, extracted by scripts/setup-oracles.sh) using
// @huggingface/jinja 0.5.11, and writes {case_name: rendered_prompt} as JSON.
// tests/unit/test_chat_format.cpp compares g4::render_chat with it byte for byte.
//
//   node tests/oracle/chat_template_oracle.mjs OUT.json [CASES.json] [TEMPLATE.jinja]
//
// Variables passed to the template: bos_token ("<bos>" unless the case sets
// one), messages, tools (only when the case has them), add_generation_prompt
// (default false), enable_thinking (only when the case sets it; the template
// treats undefined like false).
//
// Shim, the only one: the E2B/E4B template is not among the files we have.
// Cases with "variant": "small" use the 31B template with the empty-thought
// pre-fill of the generation prompt deleted, which is the single difference
// between the two (spec gemma4-io.md §2.1; Ollama commits bf2a421, e585ecd).
// The script checks that this deletion hits exactly one place. Everything else
// is rendered unmodified; nothing in the output is edited.
//
// If the oracle cannot run (package or template missing), the output file is
// removed and the script says so loudly; it exits 1 when CI=true or
// GEMMA4_REQUIRE_ORACLES=1 (a missing oracle is a failure there), else 0 (the
// C++ test then skips, loudly).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const required = process.env.CI === "true" || process.env.GEMMA4_REQUIRE_ORACLES === "1";

const [outPath, casesPath = path.join(here, "chat_cases.json"),
  templatePath = path.join(here, "llama.cpp-src/models/templates/google-gemma-4-31B-it.jinja")] = process.argv.slice(2);
if (!outPath) {
  console.error("usage: node chat_template_oracle.mjs OUT.json [CASES.json] [TEMPLATE.jinja]");
  process.exit(2);
}
fs.rmSync(outPath, { force: true });

function unavailable(why) {
  const bar = "!".repeat(78);
  console.error(`${bar}\n!! chat template oracle UNAVAILABLE: ${why}\n!! run scripts/setup-oracles.sh to install it.` +
    `${required ? "\n!! CI=true / GEMMA4_REQUIRE_ORACLES=1: this is a failure." : "\n!! The byte-exact chat format test will be SKIPPED."}\n${bar}`);
  process.exit(required ? 1 : 0);
}

let Template;
try {
  ({ Template } = await import("@huggingface/jinja"));
} catch (e) {
  unavailable(`cannot import @huggingface/jinja (${e.message})`);
}
if (!fs.existsSync(templatePath)) unavailable(`template not found: ${templatePath}`);

const largeSource = fs.readFileSync(templatePath, "utf8");
const prefill = "{{- '<|channel>thought\\n<channel|>' -}}";
if (largeSource.split(prefill).length !== 2) {
  console.error(`expected exactly one empty-thought pre-fill (${prefill}) in ${templatePath}`);
  process.exit(1);
}
const templates = {
  large: new Template(largeSource),
  small: new Template(largeSource.replace(prefill, "")),
};

const { cases } = JSON.parse(fs.readFileSync(casesPath, "utf8"));
const out = {};
let failed = 0;
for (const c of cases) {
  if (Object.hasOwn(out, c.name)) {
    console.error(`duplicate case name: ${c.name}`);
    process.exit(1);
  }
  const variant = c.variant ?? "large";
  if (!templates[variant]) {
    console.error(`case ${c.name}: unknown variant ${variant}`);
    process.exit(1);
  }
  const ctx = {
    bos_token: c.bos_token ?? "<bos>",
    messages: c.messages,
    add_generation_prompt: c.add_generation_prompt ?? false,
  };
  if (Object.hasOwn(c, "tools")) ctx.tools = c.tools;
  if (Object.hasOwn(c, "enable_thinking")) ctx.enable_thinking = c.enable_thinking;
  try {
    out[c.name] = templates[variant].render(ctx);
  } catch (e) {
    // Every case must be one the template renders; C++-only behaviour is
    // covered by the unit tests instead.
    console.error(`case ${c.name}: the template failed: ${e.message}`);
    ++failed;
  }
}
if (failed) process.exit(1);
fs.mkdirSync(path.dirname(path.resolve(outPath)), { recursive: true });
fs.writeFileSync(outPath, JSON.stringify(out, null, 1) + "\n");
console.log(`chat template oracle: rendered ${Object.keys(out).length} cases -> ${outPath}`);
