from __future__ import annotations

from torch import Tensor, nn

from ...registry import FUNCTIONS, LANGUAGE_MODELS
from .tokenizer import IMAGE_TOKEN, build_tokenizer

TRAIN_MODES = ('full', 'frozen', 'lora')


@LANGUAGE_MODELS.register_module()
class HFCausalLM(nn.Module):
    """Any Hugging Face causal language model with its tokenizer and the ``<image>`` token.

    Args:
        model: a name or local directory (``from_pretrained``), or a config dict with ``model_type``
            (e.g. ``dict(model_type='llama', hidden_size=256, ...)``), built randomly initialised with the
            tokenizer's vocabulary size.
        tokenizer: see :func:`vlkit.models.llms.tokenizer.build_tokenizer`.
        train: ``'full'`` (all weights train), ``'frozen'``, or ``'lora'`` (PEFT adapters, ``lora`` settings).
        lora: keyword arguments of ``peft.LoraConfig`` for ``train='lora'``.
        gradient_checkpointing: trade compute for activation memory.
        pretrained: a name or local directory whose weights to load (``from_pretrained``) in place of the
            random model that a ``model`` dict describes; the dict then documents the architecture and is
            what profiling builds without weights (``vlkit.analysis``).
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
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModelForCausalLM

        if train not in TRAIN_MODES:
            raise ValueError(f'language_model.train must be one of {TRAIN_MODES}, got {train!r}')
        self.tokenizer = build_tokenizer(tokenizer)
        if pretrained is not None:
            self.model = AutoModelForCausalLM.from_pretrained(pretrained)
        elif isinstance(model, dict):
            kwargs = dict(model)
            ids = {k: getattr(self.tokenizer, k) for k in ('pad_token_id', 'bos_token_id', 'eos_token_id')}
            config = AutoConfig.for_model(
                kwargs.pop('model_type'), **{'vocab_size': len(self.tokenizer), **ids, **kwargs}
            )
            self.model = AutoModelForCausalLM.from_config(config)
        else:
            self.model = AutoModelForCausalLM.from_pretrained(model)
        if self.model.get_input_embeddings().num_embeddings < len(self.tokenizer):
            self.model.resize_token_embeddings(len(self.tokenizer))
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self._set_trainable(train, lora)

    def _set_trainable(self, train: str, lora: dict | None) -> None:
        if train == 'frozen':
            self.model.requires_grad_(False)
        elif train == 'lora':
            from peft import LoraConfig, get_peft_model

            self.model = get_peft_model(self.model, LoraConfig(**(lora or {})))

    @property
    def hidden_size(self) -> int:
        return self.model.config.get_text_config().hidden_size

    def embed(self, input_ids: Tensor) -> Tensor:
        # input_ids [B, T] -> [B, T, hidden]
        return self.model.get_input_embeddings()(input_ids)


@FUNCTIONS.register_module()
def vocab_size_tokenizer(vocab_size: int):
    """A stand-in tokenizer with ``vocab_size`` entries (``<unk>``, ``<s>``, ``</s>``, ``<image>``, then
    placeholders), for building a published language model's architecture without downloading its
    tokenizer (profiling). It encodes no real text; set the model's own tokenizer to train or generate."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    special = ['<unk>', '<s>', '</s>', IMAGE_TOKEN]
    if vocab_size < len(special):
        raise ValueError(f'vocab_size_tokenizer needs vocab_size >= {len(special)}, got {vocab_size}')
    words = special + [f'<placeholder_{i}>' for i in range(len(special), vocab_size)]
    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token='<unk>'))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token='<unk>',
        bos_token='<s>',
        eos_token='</s>',
        additional_special_tokens=[IMAGE_TOKEN],
    )
