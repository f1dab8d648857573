"""The offline sentence encoder: variants, the lean forward pass, batch independence (Given / When / Then).

The int8 layer is ``unit`` (random weights, no model); tests that load all-MiniLM-L6-v2 are ``integration``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tierline.embeddings import DIM, FP32, INT8, EncoderVariant, _Int8Linear, _load, embed, encoder

TEXTS = [
    "Why was I charged for 40 seats when we only have 25 users?",
    "send me the receipt for October",
    "  I want to talk to a real person  ",
    "do you accept PayPal?",
    "the pay invoice link has expired",
    "hi",
]


# --------------------------------------------------------------------------- variants (unit)


@pytest.mark.unit
def test_given_the_variants_when_named_then_ids_tell_precision_length_and_depth_apart() -> None:
    skipping = EncoderVariant("int8", 128, layers=(0, 1, 2, 5))
    ids = {
        FP32.id,
        INT8.id,
        EncoderVariant("int8", 64).id,
        skipping.id,
        EncoderVariant("fp32", 256, (0, 1)).id,
    }
    assert len(ids) == 5
    assert FP32.id.startswith("all-MiniLM-L6-v2/fp32/max256/v")
    assert INT8.id.startswith(f"all-MiniLM-L6-v2/int8-{torch.backends.quantized.engine}/max128/v")
    assert "/layers0125/" in skipping.id


@pytest.mark.unit
def test_given_token_rows_when_the_int8_linear_runs_them_together_or_alone_then_rows_are_identical() -> None:
    generator = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(96, 48, generator=generator) * 0.1, torch.randn(96, generator=generator)
    layer = _Int8Linear(weight, bias)
    rows = torch.randn(7, 48, generator=generator)
    rows[3] *= 50.0  # one outlier row must not coarsen the others' quantisation
    with torch.inference_mode():
        together = layer(rows)
        alone = torch.cat([layer(rows[i : i + 1]) for i in range(len(rows))])
        reference = rows @ weight.T + bias
    assert torch.equal(together, alone)
    relative = (together - reference).norm(dim=1) / reference.norm(dim=1)
    assert float(relative.max()) < 0.03


@pytest.mark.unit
def test_given_a_batch_with_a_leading_dimension_when_the_int8_linear_runs_then_shape_is_kept() -> None:
    layer = _Int8Linear(torch.eye(8), torch.zeros(8))
    with torch.inference_mode():
        out = layer(torch.zeros(2, 3, 8))  # all-zero rows: no division by zero
    assert out.shape == (2, 3, 8)
    assert torch.count_nonzero(out) == 0


@pytest.mark.unit
def test_given_no_texts_when_embedded_then_an_empty_matrix_without_loading_the_model() -> None:
    assert embed([]).shape == (0, DIM)
    assert embed([], variant=INT8).dtype == np.float32


# --------------------------------------------------------------------------- real model (integration)


@pytest.mark.integration
def test_given_texts_when_embedded_in_fp32_then_equal_to_the_sentence_transformers_pipeline() -> None:
    expected = _load().encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    vectors = embed(TEXTS)
    assert vectors.shape == (len(TEXTS), DIM)
    assert vectors.dtype == np.float32
    assert np.allclose(vectors, expected, atol=1e-5)


@pytest.mark.integration
def test_given_a_text_when_embedded_in_int8_alone_or_in_a_batch_then_bit_identical() -> None:
    batched = embed(TEXTS * 3, batch_size=4, variant=INT8)
    alone = np.concatenate([embed([text], variant=INT8) for text in TEXTS])
    assert np.array_equal(batched[: len(TEXTS)], alone)
    assert np.array_equal(batched[len(TEXTS) :], np.concatenate([alone, alone]))
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


@pytest.mark.integration
def test_given_a_text_when_embedded_in_fp32_alone_or_in_a_batch_then_equal_to_float_rounding() -> None:
    batched = embed(TEXTS * 3, batch_size=4)
    alone = np.concatenate([embed([text]) for text in TEXTS])
    assert np.allclose(batched, np.concatenate([alone, alone, alone]), atol=1e-6)


@pytest.mark.integration
def test_given_texts_when_embedded_in_int8_then_close_to_fp32_but_not_equal() -> None:
    exact, quantised = embed(TEXTS), embed(TEXTS, variant=INT8)
    cosine = np.sum(exact * quantised, axis=1)
    assert float(cosine.min()) > 0.97
    assert not np.array_equal(exact, quantised)


@pytest.mark.integration
def test_given_a_long_text_when_tokenised_then_truncated_to_the_variant_length() -> None:
    long_text = " ".join(["invoice"] * 600)
    assert len(encoder(INT8).token_ids([long_text])[0]) == INT8.max_seq_length
    assert len(encoder(FP32).token_ids([long_text])[0]) == FP32.max_seq_length
    assert embed([long_text], variant=INT8).shape == (1, DIM)
