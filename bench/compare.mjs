#!/usr/bin/env node
// bench/compare: our `gemma4 bench` side by side with llama.cpp
// (node-llama-cpp 3.21.1, the project's oracle install in tests/oracle) on the
// same GGUF files, thread count, prompt and generation lengths, in one run.
//
//   bench/compare -m MODEL[,MODEL2...] [-p 512] [-n 128] [-t 2] [-r 3]
//                 [--out docs/benchmarks.md] [--gemma4 PATH]
//
// Per model, llama.cpp runs first, in a child process of its own (this script
// with --llama-child), then `gemma4 bench --json`. Each engine: one untimed
// warm-up run, then r timed runs; medians are reported.
//
// The llama.cpp side mirrors `gemma4 bench` (and llama-bench's setup):
//   * context p + n, batch size = p (node-llama-cpp also sets n_ubatch = n_batch),
//     so the prompt is one batch as in llama-bench -p p; flash attention "auto"
//     (llama.cpp's default), KV cache in its default type (F16), mmap on;
//   * prompt: <bos>, then ids (i·7919 + 13) mod n_vocab, the same ids as
//     gemma4 bench (bench_prompt_token in src/cli/cmd_bench.cpp);
//   * one controlledEvaluate over the p prompt tokens that also yields the
//     greedy next token (prefill tok/s = p / its time; ttft = its time), then n
//     single-token controlledEvaluate calls, each fed the previous greedy token
//     (decode tok/s = n / their time);
//   * decode bound = memory read bandwidth (gemma4 bench --membw, measured
//     after our model runs, same threads) ÷ bytes of weights one decode token
//     reads (decode_weight_bytes, src/model/decode_traffic.h); the table shows
//     it and each engine's decode tok/s as a share of it;
//   * peak RSS = the child's VmHWM after the runs minus its VmRSS before
//     node-llama-cpp was imported: llama.cpp's library, weights (the touched
//     part of the mmap, as for us), KV cache and buffers, without the ~40-50 MB
//     of the bare node runtime. Ours is gemma4 bench's own VmHWM (whole process).
//
// Output: a markdown table on stdout. With --out FILE the same table, the
// machine (CPU model, cores, memory), the date and this command line replace
// the block between the bench/compare markers in FILE (appended when absent;
// FILE is created when missing).
import { spawnSync, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const oracleDir = path.join(root, "tests", "oracle");
const BEGIN = "<!-- bench/compare:begin -->";
const END = "<!-- bench/compare:end -->";

function usage(msg) {
    if (msg) process.stderr.write(`bench/compare: ${msg}\n`);
    process.stderr.write(
        "usage: bench/compare -m MODEL[,MODEL2...] [-p 512] [-n 128] [-t 2] [-r 3] [--out FILE] [--gemma4 PATH]\n");
    process.exit(2);
}

function parseArgs(argv) {
    const o = { models: [], p: 512, n: 128, t: 2, r: 3, out: null, gemma4: null, child: false };
    const ints = { "-p": "p", "-n": "n", "-t": "t", "-r": "r" };
    for (let i = 0; i < argv.length; ++i) {
        const a = argv[i];
        const value = () => {
            if (i + 1 >= argv.length) usage(`${a} needs a value`);
            return argv[++i];
        };
        if (a === "-m" || a === "--model") o.models.push(...value().split(",").filter((s) => s.length));
        else if (a in ints) {
            const v = value();
            if (!/^\d+$/.test(v) || Number(v) < 1) usage(`${a} must be a positive integer, got '${v}'`);
            o[ints[a]] = Number(v);
        } else if (a === "--out") o.out = value();
        else if (a === "--gemma4") o.gemma4 = value();
        else if (a === "--llama-child") o.child = true;
        else if (a === "-h" || a === "--help") usage();
        else usage(`unknown argument '${a}'`);
    }
    if (o.models.length === 0) usage("give -m MODEL (several: -m A.gguf,B.gguf)");
    for (const m of o.models) {
        if (!fs.existsSync(m)) usage(`model '${m}' does not exist`);
        if (!fs.statSync(m).isFile()) usage(`model '${m}' is not a GGUF file (llama.cpp reads GGUF only)`);
    }
    return o;
}

// Token i of the benchmark prompt; keep in step with bench_prompt_token() in src/cli/cmd_bench.cpp.
function benchPromptToken(i, vocab, bos) {
    return i === 0 ? bos : (i * 7919 + 13) % vocab;
}

function statusKb(field) {
    const m = fs.readFileSync("/proc/self/status", "utf8").match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
    if (!m) throw new Error(`cannot read ${field} from /proc/self/status`);
    return Number(m[1]);
}

function summarize(v) {
    const s = [...v].sort((a, b) => a - b);
    const mid = s.length >> 1;
    return { median: s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2, min: s[0], max: s[s.length - 1] };
}

// --llama-child: time llama.cpp on one model, print one JSON object.
async function llamaChild(o) {
    const baselineKb = statusKb("VmRSS");
    const { openOracle } = await import(pathToFileURL(path.join(oracleDir, "llama_eval.mjs")).href);
    const oracle = await openOracle({ threads: o.t });
    const model = await oracle.llama.loadModel({ modelPath: path.resolve(o.models[0]), gpuLayers: 0 });
    const embd = model.fileInfo.tensorInfo?.find((t) => t.name === "token_embd.weight");
    if (!embd) throw new Error("no token_embd.weight in the GGUF");
    const vocab = Number(embd.dimensions[1]);
    const bos = model.tokens.bos ?? 2;
    const context = await model.createContext({
        contextSize: o.p + o.n,
        batchSize: o.p,
        sequences: 1,
        threads: { ideal: o.t, min: o.t },
        flashAttention: "auto",
    });
    const seq = context.getSequence();
    const next = { generateNext: { token: true, options: { temperature: 0 } } };
    const input = Array.from({ length: o.p }, (_, i) => benchPromptToken(i, vocab, bos));
    input[o.p - 1] = [input[o.p - 1], next];
    const prefill = [], decode = [], ttft = [];
    for (let run = 0; run <= o.r; ++run) {  // run 0: warm-up
        await seq.clearHistory();
        const t0 = performance.now();
        const out = await seq.controlledEvaluate(input);
        const t1 = performance.now();
        let tok = out[o.p - 1]?.next?.token;
        for (let k = 0; k < o.n; ++k) {
            if (tok === undefined || tok === null) throw new Error(`llama.cpp returned no token at step ${k}`);
            const step = await seq.controlledEvaluate([[tok, next]]);
            tok = step[0]?.next?.token;
        }
        const t2 = performance.now();
        if (run === 0) continue;
        prefill.push(o.p / ((t1 - t0) / 1000));
        ttft.push(t1 - t0);
        decode.push(o.n / ((t2 - t1) / 1000));
    }
    const hwmKb = statusKb("VmHWM");
    await context.dispose();
    await model.dispose();
    await oracle.close();
    const p = summarize(prefill), d = summarize(decode), f = summarize(ttft);
    return {
        prefill_tps: p.median, prefill_tps_min: p.min, prefill_tps_max: p.max,
        decode_tps: d.median, decode_tps_min: d.min, decode_tps_max: d.max,
        ttft_ms: f.median, ttft_ms_min: f.min, ttft_ms_max: f.max,
        peak_rss_mb: (hwmKb - baselineKb) / 1024,
        process_peak_rss_mb: hwmKb / 1024,
        node_baseline_rss_mb: baselineKb / 1024,
        threads: o.t, p: o.p, n: o.n, runs: o.r, vocab,
        flash_attention: context.flashAttention ?? "auto",
    };
}

// Runs a command, returns the JSON object on its last stdout line.
function runJson(what, cmd, args) {
    const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20 });
    if (r.error) throw new Error(`${what}: cannot run ${cmd}: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status}):\n${r.stderr}${r.stdout}`);
    const lines = r.stdout.trim().split("\n");
    try {
        return JSON.parse(lines[lines.length - 1]);
    } catch {
        throw new Error(`${what}: no JSON in its output:\n${r.stdout}`);
    }
}

function machine() {
    const cpuinfo = fs.readFileSync("/proc/cpuinfo", "utf8");
    const name = cpuinfo.match(/^model name\s*:\s*(.*)$/m)?.[1]?.trim() ?? "unknown CPU";
    // Physical cores: distinct (physical id, core id) pairs; logical CPUs: processor entries.
    const cores = new Set();
    for (const block of cpuinfo.split(/\n\s*\n/)) {
        const pkg = block.match(/^physical id\s*:\s*(\d+)/m)?.[1];
        const core = block.match(/^core id\s*:\s*(\d+)/m)?.[1];
        if (core !== undefined) cores.add(`${pkg ?? 0}:${core}`);
    }
    const logical = (cpuinfo.match(/^processor\s*:/gm) ?? []).length;
    const memKb = Number(fs.readFileSync("/proc/meminfo", "utf8").match(/^MemTotal:\s+(\d+) kB/m)?.[1] ?? 0);
    return { name, cores: cores.size || logical, logical, memGiB: memKb / (1 << 20) };
}

function gitDescribe() {
    try {
        return execFileSync("git", ["-C", root, "describe", "--always", "--dirty"], { encoding: "utf8" }).trim();
    } catch {
        return "unknown";
    }
}

const fmt = (v, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : "n/a");
const ratio = (ours, theirs) => (Number.isFinite(ours) && theirs > 0 ? `${(ours / theirs).toFixed(2)}×` : "n/a");
const mib = (bytes) => `${(bytes / (1 << 20)).toFixed(bytes < 100 << 20 ? 2 : 0)} MiB`;

// Decode roofline: this machine's read bandwidth (measured by gemma4 bench
// --membw in the same run) ÷ weight bytes per token, and each engine's share.
const pct = (tps, bound) => (bound > 0 ? `${Math.round((100 * tps) / bound)} %` : "n/a");
const roofline = (llama, ours) =>
    `${fmt(ours.decode_bound_tps, 2)} (${pct(llama.decode_tps, ours.decode_bound_tps)}, ${pct(ours.decode_tps, ours.decode_bound_tps)})`;

function table(rows) {
    const out = [
        "| model | file size | threads | prefill tok/s llama.cpp | prefill tok/s ours | ours/llama.cpp | decode tok/s llama.cpp | decode tok/s ours | ours/llama.cpp | decode bound tok/s (llama.cpp, ours: share) | peak RSS llama.cpp | peak RSS ours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ];
    for (const { model, bytes, llama, ours } of rows) {
        out.push(`| ${path.basename(model)} | ${mib(bytes)} | ${ours.threads} | ${fmt(llama.prefill_tps)} | ` +
            `${fmt(ours.prefill_tps)} | ${ratio(ours.prefill_tps, llama.prefill_tps)} | ${fmt(llama.decode_tps, 2)} | ` +
            `${fmt(ours.decode_tps, 2)} | ${ratio(ours.decode_tps, llama.decode_tps)} | ${roofline(llama, ours)} | ` +
            `${fmt(llama.peak_rss_mb)} MiB | ` +
            `${fmt(ours.peak_rss_mb)} MiB |`);
    }
    return out.join("\n");
}

// Spreads and time to first token, one line per model and engine.
function details(rows) {
    const out = [];
    for (const { model, llama, ours } of rows) {
        for (const [engine, r] of [["llama.cpp", llama], ["ours", ours]]) {
            out.push(`- ${path.basename(model)}, ${engine}: prefill ${fmt(r.prefill_tps_min)}–${fmt(r.prefill_tps_max)} tok/s, ` +
                `decode ${fmt(r.decode_tps_min, 2)}–${fmt(r.decode_tps_max, 2)} tok/s, ` +
                `time to first token ${fmt(r.ttft_ms)} ms (${fmt(r.ttft_ms_min)}–${fmt(r.ttft_ms_max)})` +
                (engine === "ours"
                    ? `, isa ${r.isa}; memory read ${fmt(r.membw_gbps, 2)} GB/s (${fmt(r.membw_gbps_min, 2)}–` +
                      `${fmt(r.membw_gbps_max, 2)}), weights per decode token ${fmt(r.decode_weight_bytes / 1e6, 2)} MB`
                    : `, process peak RSS ${fmt(r.process_peak_rss_mb)} MiB`));
        }
    }
    return out.join("\n");
}

function writeOut(file, section) {
    const block = `${BEGIN}\n${section}\n${END}`;
    let doc = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "# Benchmarks\n";
    const b = doc.indexOf(BEGIN), e = doc.indexOf(END);
    if (b >= 0 && e > b) doc = doc.slice(0, b) + block + doc.slice(e + END.length);
    else doc = doc.replace(/\n*$/, "\n\n") + block + "\n";
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    fs.writeFileSync(file, doc);
}

async function main() {
    const o = parseArgs(process.argv.slice(2));
    if (o.child) {
        process.stdout.write(JSON.stringify(await llamaChild(o)) + "\n");
        return;
    }
    const nlcPkg = path.join(oracleDir, "node_modules", "node-llama-cpp", "package.json");
    if (!fs.existsSync(nlcPkg)) throw new Error("node-llama-cpp is not installed: run scripts/setup-oracles.sh");
    const nlcVersion = JSON.parse(fs.readFileSync(nlcPkg, "utf8")).version;
    const gemma4 = path.resolve(o.gemma4 ?? process.env.GEMMA4 ?? path.join(root, "build", "gemma4"));
    if (!fs.existsSync(gemma4)) throw new Error(`no gemma4 binary at ${gemma4}: build it (scripts/build.sh) or pass --gemma4 PATH`);

    const common = ["-p", String(o.p), "-n", String(o.n), "-t", String(o.t), "-r", String(o.r)];
    const rows = [];
    for (const model of o.models) {
        process.stderr.write(`[compare] ${model}: llama.cpp ...\n`);
        const llama = runJson("llama.cpp (node-llama-cpp)", process.execPath,
            [fileURLToPath(import.meta.url), "--llama-child", "-m", model, ...common]);
        process.stderr.write(`[compare] ${model}: gemma4 ...\n`);
        const ours = runJson("gemma4 bench", gemma4, ["bench", "-m", model, ...common, "--membw", "--json"]);
        rows.push({ model, bytes: fs.statSync(model).size, llama, ours });
    }

    const m = machine();
    const command = ["bench/compare", ...process.argv.slice(2)]
        .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" ");
    const section = [
        `Machine: ${m.name}, ${m.cores} physical cores (${m.logical} logical CPUs), ${m.memGiB.toFixed(1)} GiB RAM, ` +
            `Linux ${os.release()}`,
        `Date: ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}`,
        `Command: \`${command}\``,
        `Engines: gemma4 ${gitDescribe()}; llama.cpp through node-llama-cpp ${nlcVersion} ` +
            `(batch = p, flash attention auto, F16 KV cache)`,
        `Prompt ${o.p} tokens, ${o.n} decode steps, ${o.t} thread${o.t > 1 ? "s" : ""}, ` +
            `median of ${o.r} run${o.r > 1 ? "s" : ""} after one warm-up.`,
        "",
        table(rows),
        "",
        details(rows),
    ].join("\n");
    process.stdout.write(section + "\n");
    if (o.out) {
        writeOut(o.out, section);
        process.stderr.write(`[compare] wrote ${o.out}\n`);
    }
}

main().catch((e) => {
    process.stderr.write(`bench/compare: ${e.message}\n`);
    process.exit(1);
});
