#!/usr/bin/env python3
"""Writes the fuzz seed corpora tests/fuzz/corpus/{gguf,safetensors}/.

Independent of the C++ writers (plain struct/json), so the seeds double as a
cross-check of the readers: test_gguf parses every GGUF seed and expects it to
be valid. Seeds are tiny (< 4 KB) and committed; rerun after changing this
script:  python3 tests/fuzz/make_corpus.py
Files carry no .gguf/.safetensors extension because .gitignore excludes those.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# GGUF metadata value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
              BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# ggml types: id -> (block size, block bytes)
GGML = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q8_0": (8, 32, 34),
        "BF16": (30, 1, 2), "Q4_K": (12, 256, 144), "I32": (26, 1, 4)}


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gval(t, v):
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gval(et, x) for x in items)
    return struct.pack(SCALAR_FMT[t], v)


def gguf(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, type_name, ne)] with data
    generated deterministically. Tensor data is laid out in order, aligned."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gstr(k) + struct.pack("<I", t) + gval(t, v)
    blobs, off = [], 0
    for name, tname, ne in tensors:
        tid, bs, bb = GGML[tname]
        n = 1
        for d in ne:
            n *= d
        nbytes = n // bs * bb
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", tid, off)
        blobs.append((off, bytes((i * 7 + len(name)) & 0xFF for i in range(nbytes))))
        off += (nbytes + alignment - 1) // alignment * alignment
    if tensors:
        out += b"\0" * (-len(out) % alignment)
        base = len(out)
        for o, b in blobs:
            out += b"\0" * (base + o - len(out)) + b
        out += b"\0" * (-len(out) % alignment)
    return out


def safetensors(tensors, metadata=None, pad_to=8):
    """tensors: [(name, dtype, shape, nbytes_per_elem)]"""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, esz in tensors:
        n = 1
        for d in shape:
            n *= d
        b = bytes((i * 13 + 1) & 0xFF for i in range(n * esz))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % pad_to)
    return struct.pack("<Q", len(h)) + h + data


def main():
    gdir = os.path.join(HERE, "corpus", "gguf")
    sdir = os.path.join(HERE, "corpus", "safetensors")
    os.makedirs(gdir, exist_ok=True)
    os.makedirs(sdir, exist_ok=True)
    seeds = {
        "empty-v3": gguf([], []),
        "empty-v2": gguf([("general.architecture", STR, "gemma4")], [], version=2),
        "all-value-types": gguf([
            ("u8", U8, 200), ("i8", I8, -100), ("u16", U16, 60000), ("i16", I16, -30000),
            ("u32", U32, 4000000000), ("i32", I32, -2000000000), ("f32", F32, 1.5),
            ("bool", BOOL, True), ("str", STR, "h\u00e9llo"), ("empty.str", STR, ""),
            ("u64", U64, 2**63 + 5), ("i64", I64, -(2**62)), ("f64", F64, -2.25),
            ("arr.i32", ARR, (I32, [1, -2, 3])), ("arr.empty", ARR, (F32, [])),
            ("arr.str", ARR, (STR, ["a", "", "\u2581b"])), ("arr.bool", ARR, (BOOL, [True, False])),
            ("arr.nested", ARR, (ARR, [(U8, [1, 2]), (STR, ["x"]), (ARR, [(I64, [7])])])),
        ], []),
        "tensors": gguf([("general.architecture", STR, "gemma4"), ("gemma4.block_count", U32, 1)], [
            ("token_embd.weight", "Q8_0", [32, 2]), ("output_norm.weight", "F32", [5]),
            ("blk.0.attn_q.weight", "Q4_0", [64, 1]), ("blk.0.ffn_up.weight", "F16", [3, 2, 2]),
            ("rope_freqs.weight", "BF16", [4, 1, 1, 2]), ("blk.0.ffn_down.weight", "Q4_K", [256]),
        ]),
        "alignment-64": gguf([("general.alignment", U32, 64)], [
            ("a", "F32", [3]), ("b", "I32", [2, 2]), ("c", "F16", [1])], alignment=64),
        "alignment-1": gguf([("general.alignment", U32, 1)], [
            ("a", "F16", [3]), ("b", "F32", [1])], alignment=1),
        "tiny-vocab": gguf([
            ("general.architecture", STR, "gemma4"), ("tokenizer.ggml.model", STR, "gemma4"),
            ("tokenizer.ggml.tokens", ARR, (STR, ["<pad>", "<eos>", "<bos>", "\u2581a", "b", "\u2581ab"])),
            ("tokenizer.ggml.scores", ARR, (F32, [0.0, 0.0, 0.0, -1.0, -2.0, -3.0])),
            ("tokenizer.ggml.token_type", ARR, (I32, [3, 3, 3, 1, 1, 1])),
            ("tokenizer.ggml.merges", ARR, (STR, ["\u2581a b"])),
            ("tokenizer.ggml.bos_token_id", U32, 2), ("tokenizer.ggml.add_bos_token", BOOL, True),
            ("gemma4.attention.sliding_window_pattern", ARR, (BOOL, [True, True, False])),
            ("gemma4.feed_forward_length", ARR, (I32, [64, 64, 128])),
        ], []),
    }
    for name, data in seeds.items():
        assert len(data) < 4096, name
        with open(os.path.join(gdir, name), "wb") as f:
            f.write(data)
    st = {
        "empty": safetensors([]),
        "two-tensors": safetensors([("model.embed_tokens.weight", "BF16", [4, 2], 2),
                                    ("model.norm.weight", "F32", [2], 4)], {"format": "pt"}),
        "f16-3d": safetensors([("w", "F16", [2, 3, 4], 2)], pad_to=1),
        "scalar-and-empty": safetensors([("s", "F32", [], 4), ("z", "F32", [0, 3], 4)]),
        "unsupported-dtype": safetensors([("ids", "I64", [3], 8), ("x", "F32", [2], 4)]),
    }
    for name, data in st.items():
        assert len(data) < 4096, name
        with open(os.path.join(sdir, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
