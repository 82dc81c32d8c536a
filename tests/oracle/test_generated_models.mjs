#!/usr/bin/env node
// Acceptance test of `gemma4 make-test-model` against llama.cpp (node-llama-cpp):
// for every arch, a tiny GGUF (f32 and f16; synthetic vocab and, when given,
// the real Gemma 4 vocab) must load, tokenize/detokenize text, and evaluate two
// different prompts (longer than the sliding window) with
//   - finite distributions at every checked position,
//   - a different top-1 token for the two prompts (not degenerate),
//   - a top-1 probability above 2/vocab (not near-uniform).
//
// usage: node test_generated_models.mjs --gemma4 PATH [--vocab VOCAB.gguf]
//                                       [--workdir DIR] [--arch a,b] [--types f32,f16] [--keep]
// Exit codes: 0 all passed, 1 failures, 77 skipped (oracle missing and not
// required). With CI=true or GEMMA4_REQUIRE_ORACLES=1 a missing oracle fails.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const required = process.env.CI === "true" || process.env.GEMMA4_REQUIRE_ORACLES === "1";

function arg(name, def) {
    const i = process.argv.indexOf(name);
    return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const gemma4 = arg("--gemma4");
const vocab = arg("--vocab", path.join(here, "llama.cpp-src/models/ggml-vocab-gemma-4.gguf"));
const workdir = arg("--workdir", path.join(process.env.TMPDIR || "/tmp", `gemma4-generated-${process.pid}`));
const archs = arg("--arch", "e2b,e4b,26b-a4b,31b").split(",");
const types = arg("--types", "f32,f16").split(",");
const keep = process.argv.includes("--keep");

function missing(what) {
    if (required) {
        console.error(`FAIL: ${what} (required: CI=true or GEMMA4_REQUIRE_ORACLES=1)`);
        process.exit(1);
    }
    console.log(`SKIP: ${what}`);
    process.exit(77);
}

if (!gemma4 || !fs.existsSync(gemma4)) {
    console.error(`FAIL: gemma4 binary not found: ${gemma4}`);
    process.exit(1);
}
let openOracle;
try {
    ({ openOracle } = await import("./llama_eval.mjs"));
    await import("node-llama-cpp");
} catch (e) {
    missing(`node-llama-cpp not importable (${e.message.split("\n")[0]}); run npm ci in tests/oracle`);
}
const vocabs = [["synthetic", null]];
if (fs.existsSync(vocab)) vocabs.push(["real", vocab]);
else if (required) {
    console.error(`FAIL: real vocab GGUF not found: ${vocab}`);
    process.exit(1);
} else console.log(`note: real vocab not found (${vocab}); synthetic vocab only`);

// Text long enough to cross the tiny sliding windows (16/32 tokens).
const prompts = [
    "The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran into the woods near " +
        "the old house by the road. Many people came to look at the house, and some of them said that it was the " +
        "first time they had seen a fox in the city.",
    "Hello world! This is a test of the model: we write some text, then we look at what the model would say " +
        "next about it. The system has a user, the user has a name, and each name is a token or two.\n\n  x = 1;",
];

fs.mkdirSync(workdir, { recursive: true });
let passed = 0, failed = 0;
let oracle;
try {
    oracle = await openOracle({ threads: 1 });
} catch (e) {
    missing(`llama.cpp could not be initialised (${e.message.split("\n")[0]})`);
}

function check(ok, what, failures) {
    if (!ok) failures.push(what);
}

for (const arch of archs) {
    for (const type of types) {
        for (const [vname, vpath] of vocabs) {
            const label = `${arch} ${type} ${vname}-vocab`;
            const out = path.join(workdir, `${arch}-${type}-${vname}.gguf`);
            const failures = [];
            const t0 = performance.now();
            try {
                const cmd = ["make-test-model", "--arch", arch, "--scale", "tiny", "--format", "gguf", "--type", type,
                             "--seed", "7", "--out", out];
                if (vpath) cmd.push("--vocab", vpath);
                execFileSync(gemma4, cmd, { stdio: ["ignore", "pipe", "pipe"] });
                const tGen = performance.now();
                // Tokenize with llama.cpp itself (checks the vocab is accepted).
                const model = await oracle.llama.loadModel({ modelPath: out, gpuLayers: 0 });
                const seqs = [];
                for (const text of prompts) {
                    const ids = Array.from(model.tokenize(text, false));
                    check(ids.length >= 48, `tokenize gave only ${ids.length} tokens`, failures);
                    const back = model.detokenize(ids);
                    check(back === text, `detokenize round trip: ${JSON.stringify(back)}`, failures);
                    seqs.push([2, ...ids]);
                }
                await model.dispose();
                const res = await oracle.evaluate({
                    model: out, sequences: seqs, top: 5,
                    positions: [16, 33, -1],  // around the 16/32-token windows, and the last
                });
                const nVocab = res.n_vocab;
                const last = res.results.map((r) => r.positions[r.positions.length - 1]);
                for (const r of res.results)
                    for (const p of r.positions) check(p.finite, `non-finite distribution at pos ${p.pos}`, failures);
                check(last[0].top[0].id !== last[1].top[0].id,
                      `top-1 is the same for both prompts (${last[0].top[0].id})`, failures);
                for (const l of last)
                    check(l.top1_prob > 2 / nVocab, `near-uniform: top-1 prob ${l.top1_prob} <= 2/${nVocab}`, failures);
                const line = `${label}: tokens ${seqs.map((s) => s.length).join("/")}, top-1 ${last.map((l) => `${l.top[0].id} (p=${l.top1_prob.toFixed(4)})`).join(" vs ")}, ` +
                    `vocab ${nVocab}, gen ${((tGen - t0) / 1000).toFixed(2)} s, eval ${(res.seconds.load + res.seconds.eval).toFixed(2)} s`;
                if (failures.length) {
                    failed++;
                    console.log(`FAIL ${line}\n    ${failures.join("\n    ")}`);
                } else {
                    passed++;
                    console.log(`ok   ${line}`);
                }
            } catch (e) {
                failed++;
                const msg = (e.stderr ? e.stderr.toString() : "") + (e.stack || e.message);
                console.log(`FAIL ${label}: ${msg}`);
                if (oracle.logs.length) console.log(oracle.logs.join("").split("\n").slice(-20).join("\n"));
            } finally {
                if (!keep) fs.rmSync(out, { force: true });
            }
        }
    }
}
await oracle.close();
if (!keep) fs.rmSync(workdir, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
