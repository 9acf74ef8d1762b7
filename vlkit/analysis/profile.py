"""Profiling a model from its config, without training: parameters, visual tokens, FLOPs, memory, speed.

``profile_only=True`` builds the model on the meta device (shapes, no weights, no compute), so a
paper-scale config is profiled on a laptop CPU in seconds: parameters and FLOPs are exact, the measured
figures (memory, speed) are None. Token ids and masks stay real CPU tensors, as the fusion and the
attention masks read their values (:class:`vlkit.analysis.meta.MetaExecution`).
"""

from __future__ import annotations

import contextlib
import copy
import time
from typing import Any

import torch
from mmengine.config import Config
from torch import nn

from ..constants import IGNORE_INDEX
from ..registry import LANGUAGE_MODELS, MODELS, VISION_ENCODERS, component_class
from .flops import count_flops
from .memory import PeakMemory, state_tensors
from .meta import MetaExecution
from .params import count_parameters

DEFAULT_TEXT_TOKENS = 64
TIMED_TRAIN_STEPS = 3
DECODE_TOKENS = 16


def _model_config(cfg: Config, profile_only: bool) -> dict:
    """``cfg.model`` as a plain dict; in profile-only mode each part's config as its class builds it without
    weights (``without_weights``)."""
    model = copy.deepcopy(cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model))
    if profile_only:
        for part, registry in (('vision_encoder', VISION_ENCODERS), ('language_model', LANGUAGE_MODELS)):
            model[part] = component_class(registry, model[part]['type']).without_weights(model[part])
    return model


def build_model(cfg: Config, *, profile_only: bool = False) -> nn.Module:
    """Builds ``cfg.model`` for profiling: on the meta device with ``profile_only``, else on the CPU with
    random weights."""
    model_cfg = _model_config(cfg, profile_only)
    if not profile_only:
        return MODELS.build(model_cfg)
    with torch.device('meta'):
        return MODELS.build(model_cfg)


def visual_tokens_per_image(model: nn.Module, image_size: int | tuple[int, int]) -> int:
    """How many visual tokens the connector makes of one image (one crop) at ``image_size``."""
    return model.connector.num_output_tokens(model.vision_encoder.num_tokens(image_size))


def make_batch(
    model: nn.Module, *, image_size: int | tuple[int, int], text_tokens: int, batch_size: int
) -> dict:
    """One image per sample, then ``text_tokens`` random text tokens: ``images``, ``input_ids``,
    ``attention_mask`` (no padding) and ``labels`` (the text tokens). Images live where the weights do;
    the integer tensors on the CPU when the weights are meta (see :class:`MetaExecution`)."""
    weights = next(model.parameters())
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    ids_device = 'cpu' if weights.is_meta else weights.device
    lm = model.language_model
    vocab = lm.model.get_input_embeddings().num_embeddings
    ids = torch.randint(0, vocab, (batch_size, 1 + text_tokens), device=ids_device)
    ids[ids == lm.image_token_id] = (lm.image_token_id + 1) % vocab
    ids[:, 0] = lm.image_token_id
    labels = ids.clone()
    labels[:, 0] = IGNORE_INDEX
    return dict(
        images=torch.randn(batch_size, 3, h, w, device=weights.device, dtype=weights.dtype),
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        labels=labels,
    )


def _train_step(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer | None = None) -> None:
    loss = model(**batch, mode='loss')['loss']
    loss.backward()
    if optimizer is not None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def count_model_flops(model: nn.Module, batch: dict) -> tuple[int, int]:
    """FLOPs of one forward pass (to the logits) and of one training step (the loss forward and its
    backward; the optimizer's elementwise update is not counted) on ``batch``."""
    inputs = {k: v for k, v in batch.items() if k != 'labels'}
    # with autograd on: under no_grad, FlopCounterMode's module tracker fails on views of parameters
    forward_flops = count_flops(lambda: model(**inputs, mode='tensor'))
    train_flops = count_flops(lambda: _train_step(model, batch))
    model.zero_grad(set_to_none=True)
    return forward_flops, train_flops


def measure_training(model: nn.Module, batch: dict, steps: int = TIMED_TRAIN_STEPS) -> tuple[int, float]:
    """Peak tensor memory (bytes) of a steady-state training step with AdamW (weights, gradients,
    optimizer states, the batch, activations and temporaries; see :class:`PeakMemory`), and training
    samples per second over ``steps`` timed steps."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    _train_step(model, batch, optimizer)  # warm-up; creates the optimizer states
    memory = PeakMemory()
    memory.track(state_tensors(model, optimizer) + list(batch.values()))
    with memory:
        _train_step(model, batch, optimizer)
    start = time.perf_counter()
    for _ in range(steps):
        _train_step(model, batch, optimizer)
    samples_per_s = steps * batch['input_ids'].shape[0] / (time.perf_counter() - start)
    model.eval()
    return memory.peak_bytes, samples_per_s


def _generate_seconds(model: nn.Module, batch: dict, new_tokens: int) -> float:
    """Seconds to encode the images and greedily generate exactly ``new_tokens`` tokens (no early stop)."""
    start = time.perf_counter()
    model.generate_ids(
        batch['images'], batch['input_ids'], batch['attention_mask'],
        max_new_tokens=new_tokens, min_new_tokens=new_tokens,
    )  # fmt: skip
    return time.perf_counter() - start


def measure_inference(model: nn.Module, batch: dict, new_tokens: int = DECODE_TOKENS) -> tuple[float, float]:
    """Time to first token (ms: image encoding, connector, fusion and the prompt's forward pass) and
    decode speed (generated tokens per second over the batch, after the first token), each the best of
    two runs after a warm-up."""
    model.eval()
    _generate_seconds(model, batch, 1)
    first = min(_generate_seconds(model, batch, 1) for _ in range(2))
    full = min(_generate_seconds(model, batch, new_tokens) for _ in range(2))
    decode_tokens = batch['input_ids'].shape[0] * (new_tokens - 1)
    return 1000.0 * first, decode_tokens / max(full - first, 1e-9)


def profile_model(
    model: nn.Module,
    *,
    image_size: int | tuple[int, int],
    text_tokens: int = DEFAULT_TEXT_TOKENS,
    batch_size: int = 1,
    measure: bool = True,
) -> dict[str, Any]:
    """The figures of :func:`profile_config` for a built model (``measure=False``: no memory or speed)."""
    batch = make_batch(model, image_size=image_size, text_tokens=text_tokens, batch_size=batch_size)
    is_meta = next(model.parameters()).is_meta
    with MetaExecution() if is_meta else contextlib.nullcontext():
        forward_flops, train_flops = count_model_flops(model, batch)
    result: dict[str, Any] = count_parameters(model)
    result['visual_tokens_per_image'] = visual_tokens_per_image(model, image_size)
    result['flops/forward_per_sample'] = forward_flops / batch_size
    result['flops/train_step_per_sample'] = train_flops / batch_size
    peak, samples_per_s, ttft_ms, decode = None, None, None, None
    if measure:
        peak, samples_per_s = measure_training(model, batch)
        ttft_ms, decode = measure_inference(model, batch)
    result['memory/train_step_peak_bytes'] = peak
    result['speed/train_samples_per_s'] = samples_per_s
    result['speed/time_to_first_token_ms'] = ttft_ms
    result['speed/decode_tokens_per_s'] = decode
    return result


def profile_config(
    cfg: Config, *, profile_only: bool = False, batch_size: int = 1, text_tokens: int = DEFAULT_TEXT_TOKENS
) -> dict[str, Any]:
    """Profiles the model of a config loaded by :func:`vlkit.config.load_config`, without training.

    Args:
        cfg: an assembled config (``cfg.model`` and ``cfg.model.image_size``).
        profile_only: build on the meta device: parameters and FLOPs only, the measured figures None.
        batch_size: samples per batch; FLOPs are reported per sample.
        text_tokens: text tokens per sample, after the image's visual tokens.

    Returns:
        A flat dict: ``params/total``, ``params/trainable``, ``params/<part>`` and ``trainable/<part>``
        (parts: vision_encoder, connector, fusion, language_model), ``visual_tokens_per_image``,
        ``flops/forward_per_sample``, ``flops/train_step_per_sample``, ``memory/train_step_peak_bytes``,
        ``speed/train_samples_per_s``, ``speed/time_to_first_token_ms``, ``speed/decode_tokens_per_s``.
        docs/profiling.md defines each figure.
    """
    if batch_size < 1 or text_tokens < 1:
        raise ValueError(f'batch_size and text_tokens must be >= 1, got {batch_size} and {text_tokens}')
    model = build_model(cfg, profile_only=profile_only)
    image_size = cfg.model.get('image_size', 64)
    return profile_model(
        model, image_size=image_size, text_tokens=text_tokens, batch_size=batch_size, measure=not profile_only
    )
