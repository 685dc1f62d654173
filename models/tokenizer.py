"""OpenAI CLIP's tokenizer: byte-level BPE with ftfy + regex cleaning, context 77, identical ids to
OpenAI's `clip.tokenize` (github.com/openai/CLIP, clip/simple_tokenizer.py).

The vocabulary models/bpe_simple_vocab_16e6.txt.gz is OpenAI's (MIT, see models/CLIP_LICENSE); its
SHA256 is checked on first use.
"""
import gzip
import hashlib
import html
import math
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

BPE_PATH = Path(__file__).resolve().parent / "bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
SOT, EOT = "<|startoftext|>", "<|endoftext|>"


def _byte_alphabet() -> list:
    """The 256 (byte, character) pairs of byte-level BPE, in vocabulary order: printable Latin-1
    bytes stand for themselves; the other bytes get the characters from U+0100 up, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in set(printable)]
    return [(b, chr(b)) for b in printable] + [(b, chr(256 + i)) for i, b in enumerate(others)]


class SimpleTokenizer:
    """OpenAI CLIP's byte-level BPE tokenizer: encode(text) -> list of ids (no start/end tokens)."""

    def __init__(self, bpe_path: Union[str, Path] = BPE_PATH, sha256: Optional[str] = BPE_SHA256):
        import ftfy  # noqa: F401 - fail here, with the import error, if the text packages are missing
        import regex

        raw = Path(bpe_path).read_bytes()
        if sha256 and hashlib.sha256(raw).hexdigest() != sha256:
            raise SystemExit(f"error: {bpe_path} is damaged (SHA256 {hashlib.sha256(raw).hexdigest()[:12]}..., "
                             f"expected {sha256[:12]}...); restore it from the repository")
        lines = gzip.decompress(raw).decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]  # 48,894 merges after the header
        alphabet = _byte_alphabet()
        self.byte_encoder = dict(alphabet)
        self.byte_decoder = {c: b for b, c in alphabet}
        vocab = [c for _, c in alphabet]
        vocab += [c + "</w>" for c in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += [SOT, EOT]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.decoder = {i: tok for tok, i in self.encoder.items()}
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {SOT: SOT, EOT: EOT}
        self.pattern = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                                     regex.IGNORECASE)
        self._regex = regex

    def clean(self, text: str) -> str:
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return self._regex.sub(r"\s+", " ", text).strip().lower()

    def bpe(self, token: str) -> str:
        """One pre-token (already byte-mapped) -> its BPE pieces joined by spaces."""
        if token in self.cache:
            return self.cache[token]
        parts = list(token[:-1]) + [token[-1] + "</w>"]
        while len(parts) > 1:
            pair = min(zip(parts, parts[1:]), key=lambda p: self.bpe_ranks.get(p, math.inf))
            if pair not in self.bpe_ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        out = " ".join(parts)
        self.cache[token] = out
        return out

    def encode(self, text: str) -> list:
        ids = []
        for piece in self.pattern.findall(self.clean(text)):
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(mapped).split(" "))
        return ids

    def decode(self, ids) -> str:
        text = "".join(self.decoder[int(i)] for i in ids)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace").replace("</w>", " ")


@lru_cache(maxsize=None)
def get_tokenizer() -> SimpleTokenizer:
    return SimpleTokenizer()


def tokenize(texts: Union[str, Sequence[str]], context_length: int = 77, truncate: bool = False) -> torch.Tensor:
    """OpenAI's clip.tokenize: [<|startoftext|>, BPE ids..., <|endoftext|>] zero-padded to
    context_length -> LongTensor [len(texts), context_length]. A text that does not fit raises
    ValueError, unless truncate=True, which cuts it and makes the last token <|endoftext|>."""
    if isinstance(texts, str):
        texts = [texts]
    tok = get_tokenizer()
    sot, eot = tok.encoder[SOT], tok.encoder[EOT]
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [sot] + tok.encode(text) + [eot]
        if len(ids) > context_length:
            if not truncate:
                raise ValueError(f"text {i} ({text[:40]!r}...) is {len(ids)} tokens, longer than the context length "
                                 f"{context_length}; shorten it or tokenize with truncate=True")
            ids = ids[:context_length]
            ids[-1] = eot
        result[i, : len(ids)] = torch.tensor(ids)
    return result

