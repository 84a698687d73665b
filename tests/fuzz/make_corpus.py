#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/gguf_reader_fuzz.cpp into tests/fuzz/corpus/.

An independent GGUF v3 writer (struct.pack only, following ggml/src/gguf.cpp's layout), so the
corpus also cross-checks Tandem's reader against a second implementation: every `valid_*`
file must parse and every `invalid_*` file must be rejected (runtime/gguf_file_test.cpp).
Deterministic: running it again produces the same bytes.
"""
import os
import struct
import sys

UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
F32, F16, Q4_0, Q8_0, Q4_K, Q6_K, BF16 = 0, 1, 2, 8, 12, 14, 30
BLOCK = {F32: (1, 4), F16: (1, 2), BF16: (1, 2), Q4_0: (32, 18), Q8_0: (32, 34), Q4_K: (256, 144), Q6_K: (256, 210)}
FMT = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i", FLOAT32: "<f",
       BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def value(t, v):
    if t == STRING:
        return gstr(v)
    if t == ARRAY:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(value(et, x) for x in items)
    return struct.pack(FMT[t], v)


def nbytes(dtype, ne):
    bs, ts = BLOCK[dtype]
    n = ne[0] // bs * ts
    for d in ne[1:]:
        n *= d
    return n


def gguf(kvs, tensors, alignment=32, version=3):
    """kvs: [(key, type, value)]; tensors: [(name, dtype, ne)] with deterministic data."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gstr(k) + struct.pack("<I", t) + value(t, v)
    offset = 0
    blobs = []
    for i, (name, dtype, ne) in enumerate(tensors):
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", dtype, offset)
        n = nbytes(dtype, ne)
        blob = bytes((i * 37 + j * 11) & 0xFF for j in range(n))
        blobs.append(blob + b"\0" * (-n % alignment))
        offset += len(blobs[-1])
    out += b"\0" * (-len(out) % alignment)
    return out + b"".join(blobs)


def tiny_smallthinker():
    d, n_head, n_kv, hd, n_exp, n_ff, vocab = 32, 2, 1, 16, 2, 32, 8
    A = "smallthinker."
    kvs = [
        ("general.architecture", STRING, "smallthinker"),
        ("general.name", STRING, "corpus-tiny"),
        (A + "context_length", UINT32, 256),
        (A + "embedding_length", UINT32, d),
        (A + "block_count", UINT32, 1),
        (A + "attention.head_count", UINT32, n_head),
        (A + "attention.head_count_kv", UINT32, n_kv),
        (A + "attention.key_length", UINT32, hd),
        (A + "attention.layer_norm_rms_epsilon", FLOAT32, 1e-6),
        (A + "expert_count", UINT32, n_exp),
        (A + "expert_used_count", UINT32, 1),
        (A + "expert_feed_forward_length", UINT32, n_ff),
        (A + "expert_gating_func", UINT32, 2),
        (A + "attention.sliding_window", UINT32, 4096),
        ("tokenizer.ggml.model", STRING, "gpt2"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, ["a", "b", "c", "ab", "abc", "<s>", "</s>", " "])),
        ("tokenizer.ggml.merges", ARRAY, (STRING, ["a b", "ab c"])),
        ("tokenizer.ggml.bos_token_id", UINT32, 5),
    ]
    q, k = n_head * hd, n_kv * hd
    tensors = [
        ("token_embd.weight", Q8_0, [d, vocab]),
        ("output_norm.weight", F32, [d]),
        ("blk.0.attn_norm.weight", F32, [d]),
        ("blk.0.attn_q.weight", Q4_0, [d, q]),
        ("blk.0.attn_k.weight", Q4_0, [d, k]),
        ("blk.0.attn_v.weight", Q4_0, [d, k]),
        ("blk.0.attn_output.weight", Q4_0, [q, d]),
        ("blk.0.ffn_norm.weight", F32, [d]),
        ("blk.0.ffn_gate_inp.weight", F32, [d, n_exp]),
        ("blk.0.ffn_gate_exps.weight", Q4_0, [d, n_ff, n_exp]),
        ("blk.0.ffn_up_exps.weight", Q4_0, [d, n_ff, n_exp]),
        ("blk.0.ffn_down_exps.weight", Q4_0, [n_ff, d, n_exp]),
    ]
    return gguf(kvs, tensors)


def all_types():
    kvs = [
        ("u8", UINT8, 255), ("i8", INT8, -128), ("u16", UINT16, 65535), ("i16", INT16, -32768),
        ("u32", UINT32, 7), ("i32", INT32, -7), ("f32", FLOAT32, 0.5), ("bool", BOOL, True),
        ("str", STRING, "hello"), ("u64", UINT64, 2**63), ("i64", INT64, -(2**62)), ("f64", FLOAT64, -2.5),
        ("arr.u8", ARRAY, (UINT8, [1, 2])), ("arr.i32", ARRAY, (INT32, [-1, 1])),
        ("arr.f32", ARRAY, (FLOAT32, [1.0])), ("arr.bool", ARRAY, (BOOL, [True, False])),
        ("arr.str", ARRAY, (STRING, ["x", ""])), ("arr.f64", ARRAY, (FLOAT64, [])),
    ]
    tensors = [("f16", F16, [3, 2]), ("bf16", BF16, [5]), ("q4_k", Q4_K, [256]), ("q6_k", Q6_K, [256, 1, 1, 1])]
    return gguf(kvs, tensors)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    files = {
        "valid_empty.gguf": gguf([], []),
        "valid_tiny_smallthinker.gguf": tiny_smallthinker(),
        "valid_all_types.gguf": all_types(),
        "valid_align64.gguf": gguf([("general.alignment", UINT32, 64)], [("a", F32, [3]), ("b", Q8_0, [32])], 64),
        "valid_v2.gguf": gguf([("k", UINT32, 1)], [("t", F32, [2])], version=2),
        "invalid_bad_magic.gguf": b"GGML" + gguf([], [])[4:],
        "invalid_v1.gguf": gguf([], [], version=1),
        "invalid_truncated.gguf": tiny_smallthinker()[:300],
        "invalid_dup_key.gguf": gguf([("k", UINT32, 1), ("k", UINT32, 2)], []),
        "invalid_q5_1.gguf": gguf([], [("t", F32, [32])]).replace(
            struct.pack("<QIQ", 32, F32, 0), struct.pack("<QIQ", 32, 7, 0)),
        "invalid_nested_array.gguf": gguf([("n", ARRAY, (UINT8, []))], []).replace(
            struct.pack("<IIQ", ARRAY, UINT8, 0), struct.pack("<IIQ", ARRAY, ARRAY, 0)),
        "invalid_gap.gguf": gguf([], [("a", F32, [3]), ("b", F32, [3])]).replace(
            struct.pack("<QIQ", 3, F32, 32), struct.pack("<QIQ", 3, F32, 64)),
    }
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(files)} files ({sum(map(len, files.values()))} bytes) to {out}")


if __name__ == "__main__":
    main()
