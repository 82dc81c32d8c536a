#!/usr/bin/env node
// The decoder against llama.cpp (node-llama-cpp 3.21.1, CPU, F32 KV cache, no
// flash attention, 1 thread): same GGUF, same token ids, full next-token
// distributions from both sides.
//
// Matrix: every tiny family (e2b, e4b, 26b-a4b, 31b) x weight type (f32, f16,
// q8_0, q4_0) x prompt length (1, 7, W-1, W, W+1, 3W+5; W = the family's
// sliding window), plus a 64-token greedy continuation of the 7-token prompt.
// The other quantized types (q4_1, q5_0, q5_1, mxfp4, q4_k, q5_k, q6_k) run
// through the same checks with --types (ctest oracle_quant_types_vs_llama:
// two families, a few lengths, no greedy run). Tiny rows are rarely a multiple
// of 256, so a K-quant file also holds llama-quantize's fallback types
// (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0); 31b's FFN down and full-layer
// attention output rows (256) are true K-quant tensors. Q8_K is left out:
// llama.cpp's CPU backend has no Q8_K matmul.
// Our side runs with --kv-type f32 to match llama.cpp's F32 cache; rows
// "kv f16|bf16|q8_0" then compare both sides with the same reduced-precision
// cache (see "KV cache types on both sides" below).
// A prompt case checks every position of the prompt, the greedy case every
// step; the table shows the worst KL per case.
//
// Checks (bounds from the issue):
//   * KL(llama.cpp || ours) = sum p_llama (log p_llama - log p_ours) over the
//     whole vocabulary <= 1e-4 (f32, f16) / 1e-3 (q8_0, q4_0 and the 5-8-bit
//     types) / 5e-3 (q4_1, q4_k, mxfp4);
//   * identical top-1; a differing top-1 is tolerated (and reported) only at a
//     near-tie: top-2 log-prob gap < 0.05 on either side;
//   * 64 greedy tokens identical on both sides (each side runs its own greedy
//     loop); a divergence is tolerated (and reported) only at a near-tie. KL
//     along the continuation is measured on our tokens (llama.cpp teacher-forced).
//
// Q8_0 / Q4_0: llama.cpp quantizes the activations to Q8_0 for these matmuls,
// and so do we by default (same quantize_row_q8_0 and integer block dots;
// checked kernel by kernel against libggml-cpu). On these tiny random models
// that rounding moves the distribution by KL ~1e-3..1e-2 by itself, and ours
// and llama.cpp's still land ~1e-3 apart (see the report in the commit / the
// table: KL vs llama.cpp quantized is of the order of KL_self, not ~0). Each
// quantized file therefore also has an f32 twin (`make-test-model
// --dequantized`: the identical weight values in F32), evaluated by llama.cpp,
// and we also run the quantized file with fp32 activations (G4_MATMUL_ACT=f32):
//   KL_twin = KL(llama.cpp on the twin || ours, fp32 activations, on the
//             quantized file) must be <= 1e-4 always (our quantized weight
//             kernels vs llama.cpp's f32 math on identical numbers);
//   KL_self = KL(llama.cpp quantized || llama.cpp twin): llama.cpp's own
//             activation rounding;
//   KL_act  = KL(llama.cpp twin || ours quantized, default): ours.
// A position whose KL exceeds 1e-3 passes only as "q-act" (counted and
// printed, never silently): KL_twin <= 1e-4 and sqrt(KL) <= sqrt(KL_self) +
// sqrt(KL_act) + sqrt(1e-4), i.e. both sides are within their own activation
// rounding of the same f32 result. A differing top-1 or greedy token passes as
// "q-act" only when llama.cpp on the twin agrees with ours in fp32 activations.
//
// Why the 1e-3 bound cannot hold everywhere for quantized files, measured per
// prompt case: "floor" = worst KL between our own kernel ISAs (default vs
// G4_ISA=scalar/avx2: identical integer math, fp32 summation orders differ by
// ~1e-7 relative), which 8-bit activation rounding amplifies to up to ~6e-3 on
// these low-confidence random models; "emul" = KL vs llama.cpp with our GELU
// switched to llama.cpp's fp16 table (G4_GELU=ggml), its one systematic
// difference from the exact function. Both are reported, not enforced: emul is
// ~1e-7 in most cases and, where it is not, of the floor's order (the floor
// samples only two of the possible summation orders, so it is a lower
// estimate of the noise; llama.cpp's own orders differ again).
//
// usage: node test_decoder_vs_llama.mjs --gemma4 PATH [--workdir DIR]
//          [--arch e2b,e4b,26b-a4b,31b] [--types f32,f16,q8_0,q4_0] [--seed N]
//          [--lengths 1,7,W-1,W,W+1,3W+5] [--greedy 64 (0: none)]
//          [--kv-rows f16,bf16,q8_0 (none: skip)] [--json-out FILE] [--keep]
// Exit codes: 0 all passed, 1 failures, 77 skipped (oracle missing and not
// required). With CI=true or GEMMA4_REQUIRE_ORACLES=1 a missing oracle fails.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const required = process.env.CI === "true" || process.env.GEMMA4_REQUIRE_ORACLES === "1";

function arg(name, def) {
    const i = process.argv.indexOf(name);
    return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const gemma4 = arg("--gemma4");
const workdir = arg("--workdir", path.join(process.env.TMPDIR || "/tmp", `gemma4-vs-llama-${process.pid}`));
const archs = arg("--arch", "e2b,e4b,26b-a4b,31b").split(",");
const types = arg("--types", "f32,f16,q8_0,q4_0").split(",");
const seed = Number(arg("--seed", "11"));
const greedySteps = Number(arg("--greedy", "64"));
// Prompt lengths: integers or aW+b in the family's sliding window W.
const lengthSpecs = arg("--lengths", "1,7,W-1,W,W+1,3W+5").split(",");
function promptLength(spec, W) {
    const m = /^(\d*)W([+-]\d+)?$/.exec(spec);
    if (!m) return Number(spec);
    return (m[1] ? Number(m[1]) : 1) * W + (m[2] ? Number(m[2]) : 0);
}
const jsonOut = arg("--json-out");
const keep = process.argv.includes("--keep");

const KL_BOUND = { f32: 1e-4, f16: 1e-4, bf16: 1e-4, q8_0: 1e-3, q4_0: 1e-3,
                   q5_0: 1e-3, q5_1: 1e-3, q5_k: 1e-3, q6_k: 1e-3, q4_1: 5e-3, q4_k: 5e-3, mxfp4: 5e-3 };
const KL_F32 = 1e-4;       // ours on a quantized file vs llama.cpp on its f32 twin
const NEAR_TIE = 0.05;     // top-2 log-prob gap
const isQuant = (t) => !["f32", "f16", "bf16"].includes(t);
for (const t of types) if (!(t in KL_BOUND)) { console.error(`FAIL: no KL bound for type ${t}`); process.exit(1); }

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
let oracle;
try {
    oracle = await openOracle({ threads: 1 });
} catch (e) {
    missing(`llama.cpp could not be initialised (${e.message.split("\n")[0]})`);
}
fs.mkdirSync(workdir, { recursive: true });

// ---- helpers -----------------------------------------------------------------

function run(args, env = null) {
    return execFileSync(gemma4, args, { stdio: ["ignore", "pipe", "pipe"], maxBuffer: 1 << 28,
                                        env: env ? { ...process.env, ...env } : process.env }).toString();
}

// Deterministic token ids in [3, vocab) after BOS (2).
function randomIds(n, vocab, s) {
    let x = BigInt(s) * 0x9E3779B97F4A7C15n & 0xFFFFFFFFFFFFFFFFn;
    const ids = [2];
    while (ids.length < n) {
        x = (x * 6364136223846793005n + 1442695040888963407n) & 0xFFFFFFFFFFFFFFFFn;
        ids.push(3 + Number((x >> 33n) % BigInt(vocab - 3)));
    }
    return ids;
}

// Our log-probabilities: `gemma4 eval --dump-logprobs` rows (float32). The KV
// cache is f32 like llama.cpp's here (the engine's default is f16), unless
// `kv` names another type.
function ours(model, ids, extra, tag, f32act = false, kv = "f32", env = null) {
    const dump = path.join(workdir, `ours-${tag}${f32act ? "-f32act" : ""}.bin`);
    const out = JSON.parse(run(["eval", "-m", model, "--tokens", ids.join(","), "--top", "2", "--json", "-t", "1",
                                "--kv-type", kv, "--dump-logprobs", dump, ...extra],
                               { ...(f32act ? { G4_MATMUL_ACT: "f32" } : {}), ...(env ?? {}) }));
    const buf = fs.readFileSync(dump);
    const V = out.n_vocab;
    const all = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
    if (all.length !== out.rows * V) throw new Error(`dump has ${all.length} values, expected ${out.rows} x ${V}`);
    const rows = [];
    for (let r = 0; r < out.rows; ++r) rows.push(all.subarray(r * V, (r + 1) * V));
    if (!keep) fs.rmSync(dump, { force: true });
    return { rows, greedy: out.greedy ?? [], V };
}

function kl(lpP, lpQ) {
    let s = 0;
    for (let i = 0; i < lpP.length; ++i) {
        const a = lpP[i];
        if (a === -Infinity) continue;
        s += Math.exp(a) * (a - lpQ[i]);
    }
    return Math.max(s, 0);  // rounding can give -1e-12
}

// Top-1 id (lowest id on an exact tie) and the top-1 minus top-2 gap.
function top2(lp) {
    let a = 0, b = -1;
    for (let i = 1; i < lp.length; ++i) {
        if (lp[i] > lp[a]) { b = a; a = i; } else if (b < 0 || lp[i] > lp[b]) b = i;
    }
    return { id: a, gap: lp[a] - lp[b] };
}

const STATUS_RANK = { ok: 0, "near-tie": 1, "q-act": 2, FAIL: 3 };
const worse = (a, b) => (STATUS_RANK[b] > STATUS_RANK[a] ? b : a);

// One position: our row vs llama.cpp's (and, for quantized files, the twin's
// against our fp32-activation row `lf`).
function judge(type, lo, ll, tw, lf) {
    const k = kl(ll, lo);
    const to = top2(lo), tl = top2(ll);
    const r = { kl: k, top1: to.id === tl.id, status: "ok", why: [] };
    let twinOk = false;
    if (tw) {
        r.klTwin = kl(tw, lf);
        r.klSelf = kl(ll, tw);
        r.klAct = kl(tw, lo);
        twinOk = r.klTwin <= KL_F32;
        if (!twinOk) { r.status = "FAIL"; r.why.push(`KL vs f32 twin ${r.klTwin.toExponential(2)} > ${KL_F32}`); }
    }
    if (k > KL_BOUND[type]) {
        if (tw && twinOk && Math.sqrt(k) <= Math.sqrt(r.klSelf) + Math.sqrt(r.klAct) + Math.sqrt(KL_F32))
            r.status = worse(r.status, "q-act");
        else { r.status = "FAIL"; r.why.push(`KL ${k.toExponential(2)} > ${KL_BOUND[type]}`); }
    }
    if (!r.top1) {
        if (to.gap < NEAR_TIE || tl.gap < NEAR_TIE) r.status = worse(r.status, "near-tie");
        else if (tw && twinOk && top2(tw).id === top2(lf).id) r.status = worse(r.status, "q-act");
        else {
            r.status = "FAIL";
            r.why.push(`top-1 ${to.id} (gap ${to.gap.toFixed(3)}) vs llama.cpp ${tl.id} (gap ${tl.gap.toFixed(3)})`);
        }
    }
    return r;
}

// Worst over positions.
function summarizeCase(judged) {
    const c = { kl: 0, klTwin: null, klSelf: null, klAct: null, agree: 0, n: judged.length, status: "ok", why: [] };
    for (const j of judged) {
        c.kl = Math.max(c.kl, j.kl);
        if (j.klTwin !== undefined) {
            c.klTwin = Math.max(c.klTwin ?? 0, j.klTwin);
            c.klSelf = Math.max(c.klSelf ?? 0, j.klSelf);
            c.klAct = Math.max(c.klAct ?? 0, j.klAct);
        }
        if (j.top1) c.agree++;
        c.status = worse(c.status, j.status);
        for (const w of j.why) if (c.why.length < 3) c.why.push(w);
    }
    return c;
}

// Free-running greedy tokens: identical, or a divergence at a near-tie.
// `oursRows[k]` / `llRows[k]`: the distributions before token k (same prefix up to the divergence).
function compareGreedy(type, g0, rows0, g1, rows1, twinGreedy, oursF32Greedy) {
    let k = 0;
    while (k < g0.length && g0[k] === g1[k]) ++k;
    if (k === g0.length) return { identical: true, status: "ok", note: "identical" };
    const a = top2(rows0[k]), b = top2(rows1[k]);
    const note = `diverge at step ${k}: ours ${g0[k]} (gap ${a.gap.toFixed(3)}) vs ${g1[k]} (gap ${b.gap.toFixed(3)})`;
    if (a.gap < NEAR_TIE || b.gap < NEAR_TIE) return { identical: false, status: "near-tie", note: `${note}, near-tie` };
    if (twinGreedy && oursF32Greedy && isQuant(type) && twinGreedy.slice(0, k + 1).every((t, i) => t === oursF32Greedy[i]))
        return { identical: false, status: "q-act", note: `${note}; llama.cpp on the f32 twin agrees with ours (f32 act)` };
    return { identical: false, status: "FAIL", note };
}

// ---- the matrix ---------------------------------------------------------------

const rows = [];
let passed = 0, failed = 0;
const t0 = performance.now();

function report(r) {
    rows.push(r);
    if (r.status === "FAIL") failed++; else passed++;
    const q = (r.klTwin !== null && r.klTwin !== undefined
        ? `  twin ${r.klTwin.toExponential(2)} self ${r.klSelf.toExponential(2)} act ${r.klAct.toExponential(2)}` : "") +
        (r.floor !== undefined ? ` floor ${r.floor.toExponential(2)} emul ${r.emul.toExponential(2)}` : "");
    const extra = [r.note, ...(r.why ?? [])].filter(Boolean).join("; ");
    console.log(`${r.family.padEnd(8)} ${r.type.padEnd(5)} ${String(r.case).padEnd(12)} ${r.kl.toExponential(2).padStart(9)} ` +
                `${`${r.agree}/${r.n}`.padStart(7)}  ${r.status.padEnd(8)}${q}${extra ? "  " + extra : ""}`);
}

console.log(`llama.cpp via node-llama-cpp, 1 thread, F32 KV cache, no flash attention; seed ${seed}`);
console.log(`bounds: KL <= ${types.map((t) => `${KL_BOUND[t]} (${t})`).join(", ")}; near-tie: top-2 gap < ${NEAR_TIE}; ` +
            `q-act: quantized file, KL(twin || ours f32-act) <= ${KL_F32} and sqrt(KL) <= sqrt(KL self) + sqrt(KL act) + 0.01`);
console.log(`${"family".padEnd(8)} ${"type".padEnd(5)} ${"case".padEnd(12)} ${"KL worst".padStart(9)} ${"top-1".padStart(7)}  status`);

for (const arch of archs) {
    let info = null, lengths = null, base = null;
    for (const type of types) {
        const label = `${arch} ${type}`;
        const model = path.join(workdir, `${arch}-${type}.gguf`);
        const twin = path.join(workdir, `${arch}-${type}-f32twin.gguf`);
        const files = [model];
        try {
            run(["make-test-model", "--arch", arch, "--scale", "tiny", "--format", "gguf", "--type", type,
                 "--seed", String(seed), "--out", model]);
            if (isQuant(type)) {
                run(["make-test-model", "--arch", arch, "--scale", "tiny", "--format", "gguf", "--type", type,
                     "--seed", String(seed), "--dequantized", "--out", twin]);
                files.push(twin);
            }
            if (!info) {
                info = JSON.parse(run(["info", model, "--json"]));
                const W = info.sliding_window;
                lengths = lengthSpecs.map((x) => promptLength(x, W));
                base = randomIds(Math.max(...lengths, 7), info.vocab_size, seed * 1000 + archs.indexOf(arch) + 1);
            }
            const prompts = lengths.map((n) => base.slice(0, n));
            const gPrompt = base.slice(0, 7);
            const greedy = greedySteps > 0;

            // Ours: every position of every prompt; the greedy continuation.
            const oursPrompts = prompts.map((p, i) => ours(model, p, ["--all"], `${arch}-${type}-${i}`));
            const oursGreedy = greedy ? ours(model, gPrompt, ["--greedy", String(greedySteps)], `${arch}-${type}-g`) : null;
            // Quantized files: the same with fp32 activations (the twin check).
            const f32Prompts = isQuant(type) ? prompts.map((p, i) => ours(model, p, ["--all"], `${arch}-${type}-${i}`, true)) : null;
            // Quantized files: the noise floor of 8-bit activations. Our kernel
            // ISAs (scalar, AVX2, AVX-512) do the same integer math and differ
            // only in fp32 summation orders (~1e-7 relative, KL ~1e-7 with fp32
            // activations); the activation rounding turns that into flipped int8
            // steps. The worst KL(ours default || ours with G4_ISA = scalar or
            // avx2) is how far two correct implementations of the same quantized
            // math land apart on these models (reported as "floor").
            // And ours with G4_GELU=ggml (llama.cpp's fp16 GELU table): the KL vs
            // llama.cpp with its one systematic difference removed ("emul" column,
            // reported: what is left is accumulation-order noise, see above).
            const emulPrompts = isQuant(type)
                ? prompts.map((p, i) => ours(model, p, ["--all"], `${arch}-${type}-${i}-emul`, false, "f32", { G4_GELU: "ggml" }))
                : null;
            const floorPrompts = isQuant(type)
                ? ["scalar", "avx2"].map((isa) => prompts.map((p, i) =>
                      ours(model, p, ["--all"], `${arch}-${type}-${i}-${isa}`, false, "f32", { G4_ISA: isa })))
                : null;
            const f32Greedy = greedy && isQuant(type)
                ? ours(model, gPrompt, ["--greedy", String(greedySteps)], `${arch}-${type}-g`, true) : null;
            // llama.cpp (one model load per file): the prompts, our continuation
            // teacher-forced, and its own greedy continuation.
            const tf = greedy ? [...gPrompt, ...oursGreedy.greedy.slice(0, greedySteps - 1)] : null;
            // Our fp32-activation rows teacher-forced along the same tokens.
            const f32Tf = greedy && isQuant(type) ? ours(model, tf, ["--all"], `${arch}-${type}-tf`, true) : null;
            // llama.cpp's own greedy run continues the 7-token prompt (an extra
            // sequence when 7 is not among the lengths).
            const seqs = greedy ? [...prompts, tf] : [...prompts];
            let gIndex = prompts.findIndex((p) => p.length === gPrompt.length);
            if (greedy && gIndex < 0) { gIndex = seqs.length; seqs.push(gPrompt); }
            const req = (m) => ({
                model: m, sequences: seqs, positions: "all", top: 2, full: true,
                greedy: seqs.map((_, i) => (greedy && i === gIndex ? greedySteps : 0)),
            });
            const ll = await oracle.evaluate(req(model));
            const tw = isQuant(type) ? await oracle.evaluate(req(twin)) : null;
            if (ll.n_vocab !== oursPrompts[0].V) throw new Error(`vocab: llama.cpp ${ll.n_vocab}, ours ${oursPrompts[0].V}`);

            for (const [i, p] of prompts.entries()) {
                const judged = p.map((_, pos) => judge(type, oursPrompts[i].rows[pos], ll.results[i].positions[pos].logprobs,
                                                       tw ? tw.results[i].positions[pos].logprobs : null,
                                                       f32Prompts ? f32Prompts[i].rows[pos] : null));
                const c = summarizeCase(judged);
                if (floorPrompts) {
                    c.floor = Math.max(...floorPrompts.flatMap((fp) => p.map((_, pos) => kl(oursPrompts[i].rows[pos], fp[i].rows[pos]))));
                    c.emul = Math.max(...p.map((_, pos) => kl(ll.results[i].positions[pos].logprobs, emulPrompts[i].rows[pos])));
                }
                report({ family: arch, type, case: `len ${p.length}`, ...c });
            }
            if (!greedy) continue;
            // Greedy: KL along our tokens, then the free-running token comparison.
            const tfRes = ll.results[prompts.length], tfTwin = tw?.results[prompts.length];
            const judged = oursGreedy.rows.map((row, k) => judge(type, row, tfRes.positions[gPrompt.length - 1 + k].logprobs,
                                                                 tfTwin ? tfTwin.positions[gPrompt.length - 1 + k].logprobs : null,
                                                                 f32Tf ? f32Tf.rows[gPrompt.length - 1 + k] : null));
            const c = summarizeCase(judged);
            const llG = ll.results[gIndex];
            const cmp = compareGreedy(type, oursGreedy.greedy, oursGreedy.rows, llG.greedy,
                                      llG.greedy_positions.map((x) => x.logprobs), tw?.results[gIndex].greedy,
                                      f32Greedy?.greedy);
            const notes = [cmp.note];
            let status = worse(c.status, cmp.status);
            if (tw) {  // ours with fp32 activations vs llama.cpp on the twin: the f32 rule
                const twG = tw.results[gIndex];
                const t = compareGreedy("f32", f32Greedy.greedy, f32Greedy.rows, twG.greedy,
                                        twG.greedy_positions.map((x) => x.logprobs), null);
                notes.push(`vs f32 twin: ${t.note}`);
                status = worse(status, t.status);
            }
            const distinct = new Set(oursGreedy.greedy).size;
            notes.push(`${distinct} distinct tokens`);
            report({ family: arch, type, case: `greedy ${greedySteps}`, ...c, status, note: notes.join("; "),
                     greedy: { ours: oursGreedy.greedy, llama: llG.greedy } });
        } catch (e) {
            const msg = (e.stderr ? e.stderr.toString() : "") + (e.stack || e.message);
            report({ family: arch, type, case: "setup", kl: NaN, agree: 0, n: 0, status: "FAIL", note: msg.split("\n").slice(0, 6).join(" | ") });
            if (oracle.logs.length) console.log(oracle.logs.join("").split("\n").slice(-10).join("\n"));
        } finally {
            if (!keep) for (const f of files) fs.rmSync(f, { force: true });
        }
    }
}

// ---- KV cache types on both sides ------------------------------------------------
// Rows "kv T": ours with --kv-type T against llama.cpp with a T cache, on the
// f32-weight file, every position of the 7 and 3W+5 prompts; KL <= KL_KV[T]
// and top-1 as above (near-ties tolerated). Both sides store K and V rounded
// to T, but llama.cpp also rounds other operands for its matmuls with the
// cache (ours stay fp32): without flash attention (f16, bf16) the queries and
// the softmax probabilities go to T; a q8_0 V cache needs its flash-attention
// path (it refuses to start without), which quantizes the queries to q8_0 and
// rounds the probabilities to f16. Worst KL measured on these models (seed
// 11): f16 7.7e-6, bf16 3.7e-4, q8_0 1.3e-3 — the size of our own T-vs-f32
// difference (test_kv_cache.cpp: f16 5e-6, bf16 3.7e-4, q8_0 3.2e-3).
// --kv-rows none skips them.
const kvRows = arg("--kv-rows", "f16,bf16,q8_0").split(",").filter((x) => x && x !== "none");
const KL_KV = { f16: 1e-4, bf16: 1.5e-3, q8_0: 5e-3 };
for (const arch of archs) {
    for (const kv of kvRows) {
        const model = path.join(workdir, `${arch}-kv-${kv}.gguf`);
        try {
            if (!(kv in KL_KV)) throw new Error(`no KL bound for --kv-rows ${kv}`);
            run(["make-test-model", "--arch", arch, "--scale", "tiny", "--format", "gguf", "--type", "f32",
                 "--seed", String(seed), "--out", model]);
            const info = JSON.parse(run(["info", model, "--json"]));
            const W = info.sliding_window;
            const base = randomIds(3 * W + 5, info.vocab_size, seed * 1000 + archs.indexOf(arch) + 1);
            const prompts = [base.slice(0, 7), base];
            const mine = prompts.map((p, i) => ours(model, p, ["--all"], `${arch}-kv-${kv}-${i}`, false, kv));
            const ll = await oracle.evaluate({ model, sequences: prompts, positions: "all", top: 2, full: true,
                                               kv_type: kv.toUpperCase(), flash_attention: kv === "q8_0" });
            for (const [i, p] of prompts.entries()) {
                const c = { kl: 0, agree: 0, n: p.length, status: "ok", why: [] };
                for (let pos = 0; pos < p.length; ++pos) {
                    const lo = mine[i].rows[pos], lq = ll.results[i].positions[pos].logprobs;
                    const k = kl(lq, lo);
                    c.kl = Math.max(c.kl, k);
                    if (k > KL_KV[kv]) { c.status = "FAIL"; if (c.why.length < 3) c.why.push(`KL ${k.toExponential(2)} at ${pos}`); }
                    const a = top2(lo), b = top2(lq);
                    if (a.id === b.id) c.agree++;
                    else if (a.gap < NEAR_TIE || b.gap < NEAR_TIE) c.status = worse(c.status, "near-tie");
                    else { c.status = "FAIL"; if (c.why.length < 3) c.why.push(`top-1 ${a.id} vs ${b.id} at ${pos}`); }
                }
                report({ family: arch, type: "f32", case: `kv ${kv} len ${p.length}`, ...c });
            }
        } catch (e) {
            const msg = (e.stderr ? e.stderr.toString() : "") + (e.stack || e.message);
            report({ family: arch, type: "f32", case: `kv ${kv}`, kl: NaN, agree: 0, n: 0, status: "FAIL",
                     note: msg.split("\n").slice(0, 6).join(" | ") });
        } finally {
            if (!keep) fs.rmSync(model, { force: true });
        }
    }
}
await oracle.close();
if (!keep) fs.rmSync(workdir, { recursive: true, force: true });

const tolerated = rows.filter((r) => r.status === "near-tie" || r.status === "q-act");
const seconds = (performance.now() - t0) / 1000;
console.log(`tolerated: ${rows.filter((r) => r.status === "near-tie").length} near-tie, ` +
            `${rows.filter((r) => r.status === "q-act").length} q-act (KL or top-1 beyond the issue's bound for a quantized ` +
            `file, explained by llama.cpp's own 8-bit activations: listed above); ${seconds.toFixed(1)} s`);
const floors = rows.filter((r) => r.floor !== undefined);
if (floors.length) {
    const worstFloor = Math.max(...floors.map((r) => r.floor));
    const worstQ = Math.max(...floors.map((r) => r.kl));
    const worstE = Math.max(...floors.map((r) => r.emul));
    console.log(`quantized files: worst KL vs llama.cpp ${worstQ.toExponential(2)} (with its GELU table emulated ` +
                `${worstE.toExponential(2)}); worst noise floor (ours default vs ours G4_ISA=scalar/avx2, identical ` +
                `integer math) ${worstFloor.toExponential(2)}; ${floors.filter((r) => r.floor > 1e-3).length}/${floors.length} ` +
                `prompt cases have a floor above 1e-3; emulated KL <= 1e-3 in ` +
                `${floors.filter((r) => r.emul <= 1e-3).length}/${floors.length}`);
}
if (jsonOut) fs.writeFileSync(jsonOut, JSON.stringify({ seed, rows, tolerated: tolerated.length, seconds }, null, 1));
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
