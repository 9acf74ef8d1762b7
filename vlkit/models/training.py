"""Which weights of a model part train: ``train='frozen' | 'full' | 'lora'``, the same for every part.

Each part's config (``vision_encoder``, ``connector``, ``language_model``) takes ``train`` and, for
``'lora'``, ``lora`` (keyword arguments of ``peft.LoraConfig``). The model builder reads both
(:class:`vlkit.models.VisionLanguageModel`) and hands the built part to :func:`set_training`:

* ``'frozen'``: no weight of the part trains;
* ``'full'``: every weight trains;
* ``'lora'``: PEFT's LoRA adapters are put into the part's Linear layers (by default every Linear layer but
  a language model's output head, as LLaVA-1.5 does), and only the adapters train. The part keeps its own
  class and ``forward``; :func:`merge_lora` folds the adapters back into plain Linear weights (export).

A frozen vision encoder or connector also runs in eval mode (no dropout, no norm-statistics updates). A
frozen language model keeps the model's mode: in stage 1 the gradients of the connector pass through it,
and Hugging Face runs gradient checkpointing only in training mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from torch import nn

TRAIN_MODES = ('frozen', 'full', 'lora')
TRAINING_KEYS = ('train', 'lora')  # what the model builder takes out of a part's config
DEFAULT_TRAIN = {'vision_encoder': 'frozen', 'connector': 'full', 'language_model': 'full'}
EVAL_WHEN_FROZEN = ('vision_encoder', 'connector')  # see the module docstring for the language model


class PartTraining(NamedTuple):
    """A part's ``train`` mode and its LoRA settings."""

    train: str
    lora: dict | None = None


def check_training(part: str, train: str, lora: Mapping | None) -> None:
    """Raises ``ValueError`` naming ``{part}.train`` or ``{part}.lora`` when they do not fit together."""
    if train not in TRAIN_MODES:
        raise ValueError(f'{part}.train must be one of {TRAIN_MODES}, got {train!r}')
    if lora is not None and train != 'lora':
        raise ValueError(f"{part}.lora is set but {part}.train={train!r}; set {part}.train='lora' to use it")


def split_training(part: str, cfg: Mapping) -> tuple[dict, PartTraining]:
    """A part's config without ``train``/``lora``, and the checked setting (``DEFAULT_TRAIN`` if unset)."""
    cfg = dict(cfg)
    setting = PartTraining(cfg.pop('train', DEFAULT_TRAIN[part]), cfg.pop('lora', None))
    check_training(part, *setting)
    return cfg, setting


def set_training(part: str, module: nn.Module, setting: PartTraining) -> None:
    """Makes exactly the weights that ``setting`` names trainable in ``module`` (see the module docstring)."""
    check_training(part, *setting)
    if setting.train == 'frozen':
        module.requires_grad_(False)
    elif setting.train == 'lora':
        add_lora(part, module, setting.lora or {})


def linear_layer_names(module: nn.Module) -> list[str]:
    """The names of every ``nn.Linear`` in ``module`` except a language model's output head."""
    heads = set()
    for sub in module.modules():
        get_head = getattr(sub, 'get_output_embeddings', None)
        head = get_head() if callable(get_head) else None
        if head is not None:
            heads.add(id(head))
    return [n for n, m in module.named_modules() if isinstance(m, nn.Linear) and id(m) not in heads]


def add_lora(part: str, module: nn.Module, settings: Mapping) -> None:
    """Puts LoRA adapters into ``module`` in place; only they train afterwards.

    ``settings['target_modules']`` is a list of module names (each matches itself and every name ending in
    ``.NAME``) or a regular expression over the names inside ``module``; by default every Linear layer
    but a language model's output head.
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as err:
        raise ImportError(f"{part}.train='lora' needs peft: pip install 'vlkit[lora]'") from err

    settings = dict(settings)
    targets = settings.pop('target_modules', None) or linear_layer_names(module)
    if not targets:
        raise ValueError(f"{part}.train='lora': {type(module).__name__} has no Linear layer to adapt")
    if isinstance(targets, str):
        targets = rf'part\.(?:{targets})'
    # PEFT treats a module with a `config.model_type` as a transformers model and needs it to be one; a
    # part only wraps one, so it goes in inside a plain holder
    holder = nn.Module()
    holder.part = module
    inject_adapter_in_model(LoraConfig(target_modules=targets, **settings), holder)  # freezes the rest


def has_lora(module: nn.Module) -> bool:
    """Whether PEFT adapters sit anywhere in ``module``."""
    return any(type(m).__module__.startswith('peft.') for m in module.modules())


def merge_lora(module: nn.Module) -> nn.Module:
    """Folds every LoRA adapter in ``module`` into its Linear layer's weight and puts the plain layer back
    (in place; returns ``module``). The state dict then has the names of a model without adapters."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, layer in list(module.named_modules()):
        if not isinstance(layer, BaseTunerLayer):
            continue
        layer.merge()
        parent_name, _, child = name.rpartition('.')
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, layer.get_base_layer())
    return module
