from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ...constants import IMAGE_TOKEN
from ...registry import LANGUAGE_MODELS
from ...tokenization import build_tokenizer
from ..hf_parts import architecture_only, attend_through_vlkit, from_pretrained
from ..training import PartTraining, set_training
from .base import LanguageModel


@LANGUAGE_MODELS.register_module()
class HFCausalLM(LanguageModel):
    """Any Hugging Face causal language model with its tokenizer and the ``<image>`` token.

    Args:
        model: a name or local directory (``from_pretrained``; :mod:`vlkit.pretrained` says where a name is
            looked for), or a config dict with ``model_type`` (e.g. ``dict(model_type='llama',
            hidden_size=256, ...)``), built randomly initialised with the tokenizer's vocabulary size.
        tokenizer: see :func:`vlkit.tokenization.build_tokenizer`.
        train: ``'full'``, ``'frozen'`` or ``'lora'`` (:mod:`vlkit.models.training`). In a model, the model
            builder reads ``language_model.train`` like every part's; here it serves a language model built
            on its own.
        lora: keyword arguments of ``peft.LoraConfig`` for ``train='lora'``.
        gradient_checkpointing: trade compute for activation memory.
        pretrained: a name or local directory whose weights to load (``from_pretrained``) in place of the
            random model that a ``model`` dict describes; the dict then documents the architecture and is
            what profiling builds without weights (``vlkit.analysis``).
        trust_remote_code: run code shipped with the checkpoint (off unless a config turns it on).
    """

    def __init__(
        self,
        *,
        model: str | dict,
        tokenizer: str | dict,
        train: str = 'full',
        lora: dict | None = None,
        gradient_checkpointing: bool = False,
        pretrained: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModelForCausalLM

        self.tokenizer = build_tokenizer(tokenizer)
        if pretrained is not None:
            self.model = from_pretrained(
                AutoModelForCausalLM, 'language_model.pretrained', pretrained, trust_remote_code
            )
        elif isinstance(model, dict):
            kwargs = dict(model)
            ids = {k: getattr(self.tokenizer, k) for k in ('pad_token_id', 'bos_token_id', 'eos_token_id')}
            config = AutoConfig.for_model(
                kwargs.pop('model_type'), **{'vocab_size': len(self.tokenizer), **ids, **kwargs}
            )
            self.model = AutoModelForCausalLM.from_config(config)
        else:
            self.model = from_pretrained(
                AutoModelForCausalLM, 'language_model.model', model, trust_remote_code
            )
        attend_through_vlkit(self.model)
        if self.model.get_input_embeddings().num_embeddings < len(self.tokenizer):
            self.model.resize_token_embeddings(len(self.tokenizer))
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        set_training('language_model', self, PartTraining(train, lora))

    @property
    def hidden_size(self) -> int:
        return self.model.config.get_text_config().hidden_size

    @classmethod
    def declared_hidden_size(cls, cfg: Mapping) -> int | None:
        model = cfg.get('model')
        return model.get('hidden_size') if isinstance(model, Mapping) else None

    @classmethod
    def without_weights(cls, cfg: Mapping) -> dict:
        """Also a tokenizer named by hub name or directory is replaced by ``vocab_size_tokenizer`` of the
        declared vocabulary size: a profile-only build reads no files."""
        cfg = architecture_only('language_model', cfg)
        if isinstance(cfg.get('tokenizer'), str):
            vocab_size = cfg['model'].get('vocab_size')
            if vocab_size is None:
                raise ValueError(
                    f'profile-only builds read no tokenizer files: language_model.tokenizer is '
                    f'{cfg["tokenizer"]!r}, so write language_model.model.vocab_size'
                )
            cfg['tokenizer'] = dict(type='vocab_size_tokenizer', vocab_size=vocab_size)
        return cfg

    def embed(self, input_ids: Tensor) -> Tensor:
        # input_ids [B, T] -> [B, T, hidden]
        return self.model.get_input_embeddings()(input_ids)
