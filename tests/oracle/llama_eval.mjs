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
//    "context_size": 0,             // default: longest sequence (+ greedy steps) rounded up to 256
//    "kv_type": "F32",              // KV cache type (default F32, per oracles.md)
//    "flash_attention": false,      // default false: llama.cpp's CPU flash attention
//                                   // computes at reduced precision whatever the KV
//                                   // type (F32 and F16 caches give identical results);
//                                   // without it an F32 cache is an F32 cache
//    "greedy": 0,                   // N, or one N per sequence: after the sequence,
//                                   // generate N greedy (argmax) tokens one at a time
//    "full": false,                 // module use: add "logprobs" (Float64Array over
//                                   // the whole vocabulary) to every position
//    "full_logprobs_path": null}    // write every position's full log-probabilities
//                                   // to this file: rows of n_vocab float32, in
//                                   // result order (sequence, its positions, its
//                                   // greedy steps)
// Response (stdout):
//   {"model": ..., "n_vocab": N, "raw_logits": false,
//    "results": [{"positions": [{"pos": n, "finite": true, "top1_prob": p, "prob_sum": s, "entropy": h,
//                                "top": [{"id": i, "logprob": l, "prob": p, "logit_rel": r}]}],
//                 "greedy": [ids],            // with "greedy"
//                 "greedy_positions": [...]}], // with "greedy": the distribution before
//                                              // each greedy token (same fields as positions)
//    "full_logprobs": {"path": p, "rows": r, "n_vocab": V},  // with "full_logprobs_path"
//    "seconds": {"load": s, "eval": s}}
// Log-probabilities are log(p / sum(p)) in double: the addon normalises in
// float32 over the whole vocabulary, so sum(p) drifts from 1 by ~1e-6 (tiny
// vocabularies) to ~1e-2 (262144 tokens).
// A greedy token is the most probable one of its step (first entry of the
// sorted map; exact ties are not resolved further).
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

// Full log-probabilities (token id order) of a probability Map.
function fullLogprobs(probabilities, nVocab) {
    let sum = 0;
    for (const p of probabilities.values()) if (Number.isFinite(p)) sum += p;
    const lse = Math.log(sum);
    const out = new Float64Array(nVocab).fill(-Infinity);
    for (const [id, p] of probabilities) out[id] = Math.log(p) - lse;
    return out;
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
            const greedyOf = (i) => {
                const g = Array.isArray(req.greedy) ? (req.greedy[i] ?? 0) : (req.greedy ?? 0);
                if (!Number.isInteger(g) || g < 0) throw new Error(`bad "greedy": ${JSON.stringify(req.greedy)}`);
                return g;
            };
            if (req.sequences.some((s) => s.length === 0)) throw new Error("empty sequence");
            const maxLen = Math.max(...req.sequences.map((s, i) => s.length + greedyOf(i)));
            const contextSize = req.context_size || Math.max(256, Math.ceil(maxLen / 256) * 256);
            const full = req.full === true;
            const fullPath = req.full_logprobs_path ?? null;
            let fullFd = null, fullRows = 0;
            let vocabSize = null;
            // Summary of one distribution (+ full log-probabilities as asked).
            const position = (pos, probabilities) => {
                vocabSize = probabilities.size;
                const r = { pos, ...summarize(probabilities, top) };
                if (full || fullPath) {
                    const lp = fullLogprobs(probabilities, probabilities.size);
                    if (full) r.logprobs = lp;
                    if (fullPath) {
                        fs.writeSync(fullFd, Buffer.from(Float32Array.from(lp).buffer));
                        ++fullRows;
                    }
                }
                return r;
            };
            const t0 = performance.now();
            logs.length = 0;
            const model = await llama.loadModel({ modelPath: path.resolve(req.model), gpuLayers: 0 });
            const context = await model.createContext({
                contextSize,
                batchSize: contextSize,
                sequences: 1,
                threads: { ideal: nThreads, min: nThreads },
                swaFullCache: true,
                flashAttention: req.flash_attention ?? false,
                experimentalKvCacheKeyType: req.kv_type ?? "F32",
                experimentalKvCacheValueType: req.kv_type ?? "F32",
            });
            const t1 = performance.now();
            const seq = context.getSequence();
            const results = [];
            const next = { generateNext: { probabilities: true, token: true, options: { temperature: 0 } } };
            try {
                if (fullPath) fullFd = fs.openSync(fullPath, "w");
                for (const [si, ids] of req.sequences.entries()) {
                    await seq.clearHistory();
                    const nGreedy = greedyOf(si);
                    const positions = resolvePositions(req.positions, ids.length);
                    const want = new Set(positions);
                    if (nGreedy > 0) want.add(ids.length - 1);
                    const input = ids.map((id, i) => want.has(i) ? [id, next] : id);
                    const out = await seq.controlledEvaluate(input);
                    const posOut = [];
                    for (const p of positions) {
                        const r = out[p];
                        if (!r || !r.next || !r.next.probabilities) throw new Error(`no output at position ${p}`);
                        posOut.push(position(p, r.next.probabilities));
                    }
                    const res = { positions: posOut };
                    if (nGreedy > 0) {
                        // Step k: the distribution after the sequence and tokens 0..k-1.
                        let probs = out[ids.length - 1]?.next?.probabilities;
                        if (!probs) throw new Error(`no output at position ${ids.length - 1}`);
                        res.greedy = [];
                        res.greedy_positions = [];
                        for (let k = 0; k < nGreedy; ++k) {
                            res.greedy_positions.push(position(ids.length - 1 + k, probs));
                            const tok = probs.keys().next().value;
                            res.greedy.push(tok);
                            if (k + 1 === nGreedy) break;
                            const o = await seq.controlledEvaluate([[tok, next]]);
                            probs = o[0]?.next?.probabilities;
                            if (!probs) throw new Error(`no output at greedy step ${k + 1}`);
                        }
                    }
                    results.push(res);
                }
            } finally {
                if (fullFd !== null) fs.closeSync(fullFd);
                await context.dispose();
                await model.dispose();
            }
            const t2 = performance.now();
            return {
                model: req.model,
                n_vocab: vocabSize,
                raw_logits: false,
                results,
                ...(fullPath ? { full_logprobs: { path: fullPath, rows: fullRows, n_vocab: vocabSize } } : {}),
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
