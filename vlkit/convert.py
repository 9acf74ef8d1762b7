"""State-dict conversion from the reference implementations of the built-in connectors
(docs/architecture.md, "Reference implementations").

Each source is a table of rename rules; :func:`convert_state_dict` applies one table. The result loads with
``strict=True`` into the vlkit connector built with the reference's hyper-parameters::

    sd = convert_state_dict('hf.blip2', torch.load('blip2.pth', weights_only=True))
    CONNECTORS.build(dict(type='QFormer', in_dim=1408, out_dim=2560)).load_state_dict(sd)

See docs/connectors.md for the sources and whole-checkpoint examples.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ['convert_state_dict', 'unwrap_state_dict', 'SOURCES', 'Rule']


@dataclass(frozen=True)
class Rule:
    """Renames every key that ``pattern`` matches in full.

    Attributes:
        pattern: a regular expression over the reference's key.
        target: the vlkit key, a ``re`` template (``\\1``) or a function of the match; ``None`` drops the
            key on purpose.
        part: ``(i, n)``: the tensor is part ``i`` of ``n`` concatenated along dim 0 into the target
            (separate key and value projections into a fused ``to_kv``).
        value: a function applied to the tensor.
        required: the reference's state dict must have a key that matches.
    """

    pattern: str
    target: str | Callable[[re.Match], str] | None
    part: tuple[int, int] | None = None
    value: Callable[[Tensor], Tensor] | None = None
    required: bool = False


_WB = r'(weight|bias)'


def _drop_batch_dim(t: Tensor) -> Tensor:
    """[1, n, d] (BLIP-2's query tokens, Honeybee's position embedding) -> [n, d]."""
    if t.dim() != 3 or t.shape[0] != 1:
        raise ValueError(f'expected a [1, n, d] tensor, got shape {tuple(t.shape)}')
    return t[0]


def _honeybee_pos_emb(t: Tensor) -> Tensor:
    """Honeybee's position embedding [1, n, d] -> [n, d]; an older checkpoint's extra first row (once the
    CLS token's: n = h * w + 1 for a square grid) is dropped, as Honeybee's own loader drops it."""
    t = _drop_batch_dim(t)
    n = t.shape[0]
    if _is_square(n - 1) and not _is_square(n):
        t = t[1:]
    return t


def _is_square(n: int) -> bool:
    return n > 0 and round(n**0.5) ** 2 == n


# LLaVA saves the projector under its place in the model (``model.mm_projector.0.weight`` in
# mm_projector.bin, ``base_model.model.model.mm_projector.*`` beside LoRA adapters): any such path is taken
_LLAVA_PATH = r'(?:.*mm_projector\.)?'


def _llava_mlp() -> list[Rule]:
    # build_vision_projector: 'mlp{n}x_gelu' a Sequential of Linear, GELU, Linear, ...; 'linear' one Linear
    return [
        Rule(rf'{_LLAVA_PATH}(\d+)\.{_WB}', r'net.\1.\2'),
        Rule(rf'{_LLAVA_PATH}{_WB}', r'net.0.\1'),
    ]


def _hf_llava() -> list[Rule]:
    path = r'(?:.*multi_modal_projector\.)?'  # the Hub's files, and model.multi_modal_projector in newer ones
    return [
        Rule(rf'{path}linear_1\.{_WB}', r'net.0.\1', required=True),
        Rule(rf'{path}linear_2\.{_WB}', r'net.2.\1', required=True),
    ]


def _hf_qformer(instructblip: bool) -> list[Rule]:
    """transformers' ``Blip2Model`` / ``InstructBlipForConditionalGeneration`` key names."""
    norm = r'qformer\.embeddings\.layernorm' if instructblip else r'qformer\.layernorm'
    layer = r'qformer\.encoder\.layer\.(\d+)\.'
    rules = [
        Rule('query_tokens', 'queries', value=_drop_batch_dim, required=True),
        Rule(rf'{norm}\.{_WB}', r'query_norm.\1', required=True),
        Rule(rf'language_projection\.{_WB}', r'projection.\1', required=True),
        Rule(r'(vision_model|language_model)\..+', None),  # the encoder and the LLM are not the connector's
    ]
    if instructblip:  # the instruction's word and position embeddings stay with whoever embeds it
        rules.append(Rule(r'qformer\.embeddings\.(word_embeddings|position_embeddings|position_ids).*', None))
    for hf, ours in (('attention', 'self_attn'), ('crossattention', 'cross_attn')):
        rules += [
            Rule(rf'{layer}{hf}\.attention\.query\.{_WB}', rf'layers.\1.{ours}.to_q.\2'),
            Rule(rf'{layer}{hf}\.attention\.key\.{_WB}', rf'layers.\1.{ours}.to_kv.\2', part=(0, 2)),
            Rule(rf'{layer}{hf}\.attention\.value\.{_WB}', rf'layers.\1.{ours}.to_kv.\2', part=(1, 2)),
            Rule(rf'{layer}{hf}\.output\.dense\.{_WB}', rf'layers.\1.{ours}.to_out.\2'),
            Rule(rf'{layer}{hf}\.output\.LayerNorm\.{_WB}', rf'layers.\1.{ours}_norm.\2'),
        ]
    # the queries' feed-forward (``*_query``), and BERT's own one, which InstructBLIP's instruction uses
    for hf, ours in (('_query', 'ff'), ('', 'text_ff')):
        rules += [
            Rule(rf'{layer}intermediate{hf}\.dense\.{_WB}', rf'layers.\1.{ours}.0.\2'),
            Rule(rf'{layer}output{hf}\.dense\.{_WB}', rf'layers.\1.{ours}.2.\2'),
            Rule(rf'{layer}output{hf}\.LayerNorm\.{_WB}', rf'layers.\1.{ours}_norm.\2'),
        ]
    return rules


_LAVIS_LAYER = r'Qformer\.bert\.encoder\.layer\.(\d+)\.'
_LAVIS_NAMES = [  # LAVIS's Q-Former key -> transformers' Blip2 key (the first pattern that matches)
    (r'Qformer\.bert\.embeddings\.LayerNorm\.', 'qformer.layernorm.'),
    (r'(?:opt|llm|t5)_proj\.', 'language_projection.'),
    (rf'{_LAVIS_LAYER}(attention|crossattention)\.self\.', r'qformer.encoder.layer.\1.\2.attention.'),
    (_LAVIS_LAYER, r'qformer.encoder.layer.\1.'),
]


def _lavis_to_transformers(key: str) -> str:
    for pattern, target in _LAVIS_NAMES:
        key, renamed = re.subn(f'^{pattern}', target, key)
        if renamed:
            return key
    return key


def _lavis_qformer() -> list[Rule]:
    """LAVIS's BLIP-2 and InstructBLIP checkpoints (``Qformer.bert.*``, ``query_tokens``, the projection to
    the language model ``opt_proj`` / ``llm_proj`` / ``t5_proj``), read through transformers' names
    (:data:`KEY_NAMES`). The vision encoder (``visual_encoder``, ``ln_vision``: transformers'
    ``post_layernorm``), the language model, and BERT's text embeddings and language-model head (``cls``) are
    not the connector's."""
    drop = r'(visual_encoder|ln_vision|opt_model|llm_model|t5_model|Qformer\.cls)\..+'
    text = r'Qformer\.bert\.embeddings\.(word_embeddings|position_embeddings|position_ids).*'
    return [Rule(drop, None), Rule(text, None), *_hf_qformer(instructblip=False)]


def _open_flamingo_perceiver() -> list[Rule]:
    # layers.{i} is a ModuleList [PerceiverAttention, FeedForward]
    return [
        Rule('latents', 'latents', required=True),
        Rule(rf'layers\.(\d+)\.0\.(norm_media|norm_latents)\.{_WB}', r'layers.\1.\2.\3'),
        Rule(r'layers\.(\d+)\.0\.(to_q|to_kv|to_out)\.weight', r'layers.\1.attn.\2.weight'),
        Rule(rf'layers\.(\d+)\.1\.(\d+)\.{_WB}', r'layers.\1.ff.\2.\3'),
        Rule(rf'norm\.{_WB}', r'norm.\1', required=True),
    ]


def _xgen_mm_perceiver() -> list[Rule]:
    return _open_flamingo_perceiver() + [Rule(rf'projection\.{_WB}', r'projection.\1', required=True)]


def _open_flamingo_gated_xattn() -> list[Rule]:
    # GatedCrossAttentionBlock: attn = MaskedCrossAttention (its own pre-norm), ff = Flamingo's FeedForward;
    # vlkit's GatedCrossAttentionBlock keeps the pre-norm beside its attention (``norm``)
    return [
        Rule(rf'attn\.norm\.{_WB}', r'norm.\1', required=True),
        Rule(r'attn\.(to_q|to_kv|to_out)\.weight', r'attn.\1.weight', required=True),
        Rule(rf'ff\.(\d+)\.{_WB}', r'ff.\1.\2', required=True),
        Rule(r'attn_gate', 'attn_gate', required=True),
        Rule(r'ff_gate', 'ff_gate', required=True),
    ]


def _regstage_block(rest: str) -> Callable[[re.Match], str]:
    """``net.{0|2}.b{k}.<rest>`` (timm RegStage blocks, 1-based) -> ``stage{1|2}.{k - 1}.<rest>``."""
    return lambda m: f'stage{1 if m[1] == "0" else 2}.{int(m[2]) - 1}.' + m.expand(rest)


def _honeybee_c_abstractor() -> list[Rule]:
    # net = Sequential(RegStage, AdaptiveAvgPool2d, RegStage); a block's ConvNormAct is ``conv`` + ``bn``
    block = r'net\.([02])\.b(\d+)\.'
    return [
        Rule('pos_emb', 'pos_emb', value=_honeybee_pos_emb, required=True),
        Rule(rf'{block}conv([123])\.conv\.weight', _regstage_block(r'conv\3.weight')),
        Rule(rf'{block}conv([123])\.bn\.{_WB}', _regstage_block(r'norm\3.\4')),
        Rule(rf'{block}se\.fc1\.{_WB}', _regstage_block(r'se.reduce.\3')),
        Rule(rf'{block}se\.fc2\.{_WB}', _regstage_block(r'se.expand.\3')),
        Rule(rf'{block}downsample\.conv\.weight', _regstage_block('shortcut.0.weight')),
        Rule(rf'{block}downsample\.bn\.{_WB}', _regstage_block(r'shortcut.1.\3')),
        Rule(rf'readout\.(\d+)\.{_WB}', r'readout.\1.\2', required=True),
    ]


SOURCES: dict[str, list[Rule]] = {
    'llava.mlp': _llava_mlp(),
    'hf.llava': _hf_llava(),
    'hf.blip2': _hf_qformer(instructblip=False),
    'hf.instructblip': _hf_qformer(instructblip=True),
    'open_flamingo.perceiver': _open_flamingo_perceiver(),
    'xgen_mm.perceiver': _xgen_mm_perceiver(),
    'honeybee.c_abstractor': _honeybee_c_abstractor(),
    'lavis.blip2': _lavis_qformer(),
    'open_flamingo.gated_xattn': _open_flamingo_gated_xattn(),
}


# a source whose keys are renamed before its rules apply
KEY_NAMES: dict[str, Callable[[str], str]] = {'lavis.blip2': _lavis_to_transformers}
# what training code wraps a state dict in (LAVIS and prismatic 'model', DeepSpeed 'module', ...)
WRAPPERS = ('model', 'state_dict', 'module', 'model_state_dict')


def unwrap_state_dict(state_dict: Mapping) -> Mapping:
    """The state dict inside a checkpoint's wrapper (a dict with exactly one entry of :data:`WRAPPERS`
    holding a dict, beside the optimizer, epoch or config that LAVIS, prismatic, DeepSpeed and open_flamingo's
    training save with it), keys without DDP's ``module.``."""
    while True:
        inner = [v for k, v in state_dict.items() if k in WRAPPERS and isinstance(v, Mapping)]
        if len(inner) != 1:
            break
        state_dict = inner[0]
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = {k[len('module.') :]: v for k, v in state_dict.items()}
    return state_dict


def _match(rules: list[Rule], key: str) -> tuple[Rule, re.Match] | None:
    for rule in rules:
        m = re.fullmatch(rule.pattern, key)
        if m:
            return rule, m
    return None


def convert_state_dict(
    source: str, state_dict: Mapping[str, Tensor], *, prefix: str = ''
) -> dict[str, Tensor]:
    """Renames a reference implementation's connector weights to the vlkit connector's keys.

    Args:
        source: one of :data:`SOURCES` (``'hf.blip2'``, ``'xgen_mm.perceiver'``, ...).
        state_dict: the reference module's state dict (``hf.blip2``: a whole ``Blip2Model``'s, whose
            ``vision_model.*`` and ``language_model.*`` keys are dropped), or a checkpoint wrapping it
            (:func:`unwrap_state_dict`).
        prefix: take only the keys under this prefix, with it removed (the connector inside a whole
            model's checkpoint, e.g. ``'vlm.vision_tokenizer.'`` for BLIP-3); the others are ignored.

    Returns:
        A state dict for ``load_state_dict(..., strict=True)`` of the matching vlkit connector.

    Raises:
        KeyError: the source is unknown, a key matches no rule, or a required key is missing.
    """
    if source not in SOURCES:
        raise KeyError(f'unknown conversion source {source!r}; known sources: {sorted(SOURCES)}')
    rules, rename = SOURCES[source], KEY_NAMES.get(source, str)
    state_dict = unwrap_state_dict(state_dict)
    out: dict[str, Tensor] = {}
    # a fused target -> (number of parts, {part index: (reference key, tensor)})
    fused: dict[str, tuple[int, dict[int, tuple[str, Tensor]]]] = {}
    unmapped, matched = [], set()
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        key = rename(key[len(prefix) :])
        found = _match(rules, key)
        if found is None:
            unmapped.append(key)
            continue
        rule, m = found
        matched.add(rule.pattern)
        if rule.target is None:
            continue
        name = rule.target(m) if callable(rule.target) else m.expand(rule.target)
        value = rule.value(value) if rule.value else value
        if rule.part is None:
            out[name] = value
        else:
            fused.setdefault(name, (rule.part[1], {}))[1][rule.part[0]] = (key, value)
    missing = [rule.pattern for rule in rules if rule.required and rule.pattern not in matched]
    missing += [f'the other parts of {name} (have only {[k for k, _ in parts.values()]})'
                for name, (n, parts) in fused.items() if len(parts) != n]  # fmt: skip
    if not out and not fused and not unmapped:
        missing.append(f'any key (found {sorted(state_dict)[:5]}{" ..." if len(state_dict) > 5 else ""})')
    _raise_if_any(source, prefix, unmapped, missing)
    out.update({name: torch.cat([parts[i][1] for i in sorted(parts)]) for name, (_, parts) in fused.items()})
    return out


def _raise_if_any(source: str, prefix: str, unmapped: list[str], missing: list[str]) -> None:
    problems = []
    if unmapped:
        problems.append(f'keys that no {source!r} rule maps: {sorted(unmapped)}')
    if missing:
        problems.append(f'missing keys (as regular expressions): {missing}')
    if problems:
        where = f' under prefix {prefix!r}' if prefix else ''
        raise KeyError(f'cannot convert the {source!r} state dict{where}: ' + '; '.join(problems))
