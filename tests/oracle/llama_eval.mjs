#!/usr/bin/env node
// llama.cpp oracle (node-llama-cpp 3.21.1, CPU, prebuilt; see shared/spec/oracles.md).
//
// Evaluates token-id sequences with llama.cpp and reports the next-token
// distribution at chosen positions.
//
// Request (JSON; as the first argument, a path to a .json file, or "-" for stdin):
//   {"model": "path.gguf",          // required
//    "sequences": [[2, 818, ...]],  // required; ids as given (no BOS is added)
//    "top": 10,                     // top-K per position (default 10)
//    "positions": "last",           // "last" | "all" | [indices]   (default "last")
//    "threads": 1,                  // default 1: ggml threads spin-wait, so more
//                                   // only pays off for big models on an idle machine
//    "context_size": 0,             // default: longest sequence rounded up to 256
//    "kv_type": "F32"}              // KV cache type (default F32, per oracles.md)
// Response (stdout):
//   {"model": ..., "n_vocab": N, "raw_logits": false,
//    "results": [{"positions": [{"pos": n, "finite": true, "top1_prob": p, "prob_sum": s, "entropy": h,
//                                "top": [{"id": i, "logprob": l, "prob": p, "logit_rel": r}]}]}],
//    "seconds": {"load": s, "eval": s}}
// `pos` is the index in the sequence of the token after which the distribution
// is taken. node-llama-cpp 3.21.1 exposes only the softmax of the raw logits,
// which is shift invariant, so absolute logits cannot be recovered: `logit_rel`
// is logit - max logit (= logprob - top-1 logprob), exact up to float rounding.
// `finite` is false if any probability is NaN/inf (non-finite logits).
//
// Also usable as a module: `import { openOracle } from "./llama_eval.mjs"`,
// then `const o = await openOracle({threads}); const r = await o.evaluate(request); await o.close();`
// (loads the native library once for many models; `o.llama` is the node-llama-cpp
// instance, e.g. to load a model for tokenizing).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

function resolvePositions(spec, len) {
    if (spec === undefined || spec === "last") return [len - 1];
    if (spec === "all") return Array.from({ length: len }, (_, i) => i);
    if (Array.isArray(spec)) {
        return spec.map((p) => {
            const q = p < 0 ? len + p : p;
            if (!Number.isInteger(q) || q < 0 || q >= len) throw new Error(`position ${p} out of range for length ${len}`);
            return q;
        });
    }
    throw new Error(`bad "positions": ${JSON.stringify(spec)}`);
}

function summarize(probabilities, top) {
    // probabilities: Map(token -> prob), sorted by probability (highest first).
    let finite = true;
    let sum = 0;
    let entropy = 0;
    for (const p of probabilities.values()) {
        if (!Number.isFinite(p)) { finite = false; continue; }
        sum += p;
        if (p > 0) entropy -= p * Math.log(p);
    }
    // The addon normalises in float32 over the whole vocabulary, so the sum
    // drifts from 1 by up to ~1e-2 for 262144 tokens; NaN/inf logits give NaN.
    if (!(Math.abs(sum - 1) < 0.05)) finite = false;
    const out = [];
    let top1 = null;
    for (const [id, p] of probabilities) {
        if (out.length >= top) break;
        const lp = Math.log(p);
        if (top1 === null) top1 = lp;
        out.push({ id, logprob: lp, prob: p, logit_rel: lp - top1 });
    }
    return { finite, top1_prob: out.length ? out[0].prob : null, prob_sum: sum, entropy, top: out };
}

export async function openOracle({ threads } = {}) {
    const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
    const logs = [];
    const llama = await getLlama({
        gpu: false,
        build: "never",
        logLevel: LlamaLogLevel.error,
        logger: (level, message) => { logs.push(String(message)); },
        ...(threads ? { maxThreads: threads } : {}),
    });
    return {
        llama,
        logs,
        async evaluate(req) {
            if (!req || typeof req.model !== "string") throw new Error('request needs "model"');
            if (!Array.isArray(req.sequences) || req.sequences.length === 0) throw new Error('request needs "sequences"');
            const top = req.top ?? 10;
            const nThreads = req.threads ?? threads ?? 1;
            const maxLen = Math.max(...req.sequences.map((s) => s.length));
            if (maxLen === 0) throw new Error("empty sequence");
            const contextSize = req.context_size || Math.max(256, Math.ceil(maxLen / 256) * 256);
            const t0 = performance.now();
            logs.length = 0;
            const model = await llama.loadModel({ modelPath: path.resolve(req.model), gpuLayers: 0 });
            const context = await model.createContext({
                contextSize,
                batchSize: contextSize,
                sequences: 1,
                threads: { ideal: nThreads, min: nThreads },
                swaFullCache: true,
                experimentalKvCacheKeyType: req.kv_type ?? "F32",
                experimentalKvCacheValueType: req.kv_type ?? "F32",
            });
            const t1 = performance.now();
            const seq = context.getSequence();
            const results = [];
            let vocabSize = null;
            try {
                for (const ids of req.sequences) {
                    await seq.clearHistory();
                    const positions = resolvePositions(req.positions, ids.length);
                    const want = new Set(positions);
                    const input = ids.map((id, i) => want.has(i)
                        ? [id, { generateNext: { probabilities: true, token: true, options: { temperature: 0 } } }]
                        : id);
                    const out = await seq.controlledEvaluate(input);
                    const posOut = [];
                    for (const p of positions) {
                        const r = out[p];
                        if (!r || !r.next || !r.next.probabilities) throw new Error(`no output at position ${p}`);
                        vocabSize = r.next.probabilities.size;
                        posOut.push({ pos: p, ...summarize(r.next.probabilities, top) });
                    }
                    results.push({ positions: posOut });
                }
            } finally {
                await context.dispose();
                await model.dispose();
            }
            const t2 = performance.now();
            return {
                model: req.model,
                n_vocab: vocabSize,
                raw_logits: false,
                results,
                seconds: { load: (t1 - t0) / 1000, eval: (t2 - t1) / 1000 },
            };
        },
        async close() { await llama.dispose(); },
    };
}

function readRequest(arg) {
    if (arg === undefined) throw new Error("usage: llama_eval.mjs '<json request>' | request.json | -");
    if (arg === "-") return JSON.parse(fs.readFileSync(0, "utf8"));
    if (arg.trimStart().startsWith("{")) return JSON.parse(arg);
    return JSON.parse(fs.readFileSync(arg, "utf8"));
}

async function main() {
    let req;
    try {
        req = readRequest(process.argv[2]);
    } catch (e) {
        process.stderr.write(`llama_eval: ${e.message}\n`);
        process.exit(2);
    }
    let oracle;
    try {
        oracle = await openOracle({ threads: req.threads });
        const res = await oracle.evaluate(req);
        process.stdout.write(JSON.stringify(res) + "\n");
        await oracle.close();
    } catch (e) {
        if (oracle?.logs?.length) process.stderr.write(oracle.logs.join(""));
        process.stderr.write(`llama_eval: ${e.stack || e.message}\n`);
        process.exit(1);
    }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    await main();
}
