"""The vision-language model: encoder -> connector -> fusion -> language model."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor, nn

from ..constants import IGNORE_INDEX
from ..ops import autocast
from ..registry import CONNECTORS, FUSIONS, LANGUAGE_MODELS, MODELS, VISION_ENCODERS, component_class
from .connector import Connector
from .fusion import DEFAULT_FUSION, FusionInputs, LanguageModelInputs
from .training import EVAL_WHEN_FROZEN, set_training, split_training


@MODELS.register_module()
class VisionLanguageModel(BaseModel):
    """Builds the four parts from their configs and trains them with next-token loss on text tokens.

    The connector's ``in_dim``/``out_dim`` (and ``input_grid`` where declared) are filled in here, so
    configs never repeat dimensions. Each part's config may say which of its weights train,
    ``train='frozen' | 'full' | 'lora'`` (with ``lora=dict(...)``; :mod:`vlkit.models.training`); by default
    the encoder is frozen (and in eval mode, BLIP-3's default), the connector and the language model train.

    Attributes:
        PARTS: the parts' attribute names, which are also their config keys and the top-level keys of an
            experiment file.

    Args:
        vision_encoder: a ``VISION_ENCODERS`` config.
        connector: a ``CONNECTORS`` config.
        language_model: a ``LANGUAGE_MODELS`` config.
        fusion: a ``FUSIONS`` config (default: ``DEFAULT_FUSION``).
        image_size: input resolution, used to tell the connector the encoder's token grid.
        freeze_vision_encoder: deprecated; write ``vision_encoder=dict(..., train='frozen' | 'full')``.
        max_new_tokens: answer length limit for ``mode='predict'``.
        crop_separator: with any-resolution crops (``crop_counts`` in the batch), put a learned vector
            between the tokens of consecutive crops of an image, so the language model sees where each
            crop ends (BLIP-3 and Idefics2 mark crop boundaries too; theirs are text tokens).
        precision: ``'fp32'``, or ``'bf16'`` to run every forward pass under bf16 autocast (weights stay
            fp32); the tools resolve the config's ``precision`` per machine (vlkit.engine.precision).
        compile: compile the connector and the fusion's layers with ``torch.compile`` (``True``, or a dict of
            its options); the same values as eager, the parameters' names unchanged (``nn.Module.compile``).
    """

    PARTS = ('vision_encoder', 'connector', 'language_model', 'fusion')

    def __init__(
        self,
        vision_encoder: dict,
        connector: dict,
        language_model: dict,
        fusion: dict | None = None,
        image_size: int = 64,
        freeze_vision_encoder: bool | None = None,
        max_new_tokens: int = 8,
        crop_separator: bool = False,
        precision: str = 'fp32',
        compile: bool | dict = False,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        vision_encoder = _with_legacy_freeze(vision_encoder, freeze_vision_encoder)
        vision_encoder, encoder_training = split_training('vision_encoder', vision_encoder)
        language_model, llm_training = split_training('language_model', language_model)
        connector, connector_training = split_training('connector', connector)
        self.part_training = dict(
            vision_encoder=encoder_training, connector=connector_training, language_model=llm_training
        )
        self.vision_encoder = VISION_ENCODERS.build(vision_encoder)
        self.language_model = LANGUAGE_MODELS.build(language_model)
        set_training('language_model', self.language_model, llm_training)  # before a fusion looks at it
        self.fusion = FUSIONS.build(fusion or dict(type=DEFAULT_FUSION))
        self.fusion.attach(self.language_model)
        self.connector = CONNECTORS.build(connector, default_args=self._connector_args(connector, image_size))
        set_training('vision_encoder', self.vision_encoder, encoder_training)
        set_training('connector', self.connector, connector_training)
        self.image_size = image_size
        self.precision = precision
        autocast('cpu', precision)  # refuses anything but 'fp32' and 'bf16' at build time
        self.max_new_tokens = max_new_tokens
        out_dim = self.connector.out_dim
        self.crop_separator = nn.Parameter(0.02 * torch.randn(out_dim)) if crop_separator else None
        self.train(self.training)
        if compile:
            self._compile({} if compile is True else dict(compile))

    def _compile(self, options: dict) -> None:
        """The connector and each of the fusion's own layers, compiled in place (their names unchanged)."""
        self.connector.compile(**options)
        for layer in self.fusion.children():
            for module in layer if isinstance(layer, nn.ModuleList) else [layer]:
                module.compile(**options)

    def _connector_args(self, connector: dict, image_size: int) -> dict:
        """What the builder supplies: ``in_dim``, ``out_dim``, ``input_grid`` (where a connector takes it)."""
        args = dict(
            in_dim=self.vision_encoder.out_dim,
            out_dim=self.fusion.connector_out_dim(self.language_model.hidden_size),
        )
        cls = component_class(CONNECTORS, connector.get('type'))
        if isinstance(cls, type) and issubclass(cls, Connector) and cls.wants_input_grid():
            args['input_grid'] = self.vision_encoder.grid_size(image_size)
        return args

    def train(self, mode: bool = True) -> VisionLanguageModel:
        super().train(mode)
        for part in EVAL_WHEN_FROZEN:  # no dropout / norm statistics updates in a frozen encoder
            if self.part_training[part].train == 'frozen':
                getattr(self, part).eval()
        return self

    def trains(self, part: str) -> bool:
        """Whether any weight of ``part`` (``'vision_encoder'``, ...) trains (``train`` is not frozen)."""
        return self.part_training[part].train != 'frozen'

    @property
    def tokenizer(self):
        return self.language_model.tokenizer

    def encode_images(
        self, images: Tensor, crop_counts: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """images [I, 3, H, W] -> (visual tokens [I, M, connector out_dim], None).

        With ``crop_counts`` [I] the rows of ``images`` are the any-resolution crops of I images, in order:
        every crop goes through encoder and connector on its own (one batch), and each image's crops'
        tokens are concatenated (with :attr:`crop_separator` between crops when configured). Returns
        (tokens [I, L_max, D], zero-padded, lengths [I]), ``L = crops * M (+ crops - 1 separators)``.
        """
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trains('vision_encoder')):
            feats = self.vision_encoder(images)
        tokens = self.connector(feats.tokens, None, feats.grid)  # [C, M, D]
        if crop_counts is None:
            return tokens, None
        if int(crop_counts.sum()) != len(tokens):
            raise ValueError(
                f'crop_counts {crop_counts.tolist()} add up to {int(crop_counts.sum())}, not to '
                f"the batch's {len(tokens)} image crops"
            )
        per_image = [self._join_crops(crops) for crops in tokens.split(crop_counts.tolist())]
        lengths = torch.tensor([len(t) for t in per_image], device=tokens.device)
        return nn.utils.rnn.pad_sequence(per_image, batch_first=True), lengths

    def _join_crops(self, crops: Tensor) -> Tensor:
        """One image's crop tokens [n, M, D] -> [n * M (+ n - 1 separators), D]."""
        if self.crop_separator is None or len(crops) == 1:
            return crops.flatten(0, 1)
        separators = self.crop_separator.to(crops.dtype).expand(len(crops), 1, -1)
        return torch.cat([crops, separators], 1).flatten(0, 1)[:-1]

    def fuse(
        self, images, input_ids, attention_mask, labels=None, align_right=False, crop_counts=None
    ) -> LanguageModelInputs:
        """Encodes the images and lets the fusion build the language model's inputs."""
        visual, lengths = (
            self.encode_images(images, crop_counts) if images.numel() else (images.new_zeros(0, 1, 1), None)
        )
        lm = self.language_model
        inputs = FusionInputs(
            input_ids=input_ids,
            attention_mask=attention_mask,
            text_embeds=lm.embed(input_ids),
            visual_tokens=visual,
            image_token_id=lm.image_token_id,
            labels=labels,
            visual_lengths=lengths,
            align_right=align_right,
        )
        return self.fusion(inputs)

    def forward(
        self,
        images: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        labels: Tensor | None = None,
        mode: str = 'tensor',
        crop_counts: Tensor | None = None,
        **meta,
    ):
        if mode not in ('loss', 'predict', 'tensor'):
            raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
        with autocast(images.device.type, self.precision):
            if mode == 'loss':
                return {'loss': self.loss(images, input_ids, attention_mask, labels, crop_counts)}
            if mode == 'predict':
                return self.predict(images, input_ids, attention_mask, crop_counts=crop_counts, **meta)
            inputs = self.fuse(images, input_ids, attention_mask, crop_counts=crop_counts)
            return self.fusion.call_language_model(self.language_model.model, inputs).logits

    def loss(self, images, input_ids, attention_mask, labels, crop_counts=None) -> Tensor:
        inputs = self.fuse(images, input_ids, attention_mask, labels, crop_counts=crop_counts)
        logits = self.fusion.call_language_model(self.language_model.model, inputs).logits
        return F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), inputs.labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX
        )

    @torch.no_grad()
    def generate_ids(
        self,
        images: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        crop_counts: Tensor | None = None,
        **generate_kwargs,
    ) -> Tensor:
        """Greedy continuations [B, new tokens] of left-padded prompts (``generate_kwargs`` override the
        defaults: ``max_new_tokens`` = the model's, no ``<image>`` token in an answer)."""
        with autocast(images.device.type, self.precision):
            return self._generate_ids(images, input_ids, attention_mask, crop_counts, generate_kwargs)

    def _generate_ids(self, images, input_ids, attention_mask, crop_counts, generate_kwargs) -> Tensor:
        inputs = self.fuse(images, input_ids, attention_mask, align_right=True, crop_counts=crop_counts)
        tok = self.tokenizer
        settings = dict(
            position_ids=inputs.position_ids(),
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            suppress_tokens=[self.language_model.image_token_id],  # no image to splice in mid-answer
        )
        settings.update(generate_kwargs)
        return self.fusion.call_language_model(self.language_model.model, inputs, generate=True, **settings)

    def generate(
        self, images: Tensor, input_ids: Tensor, attention_mask: Tensor, crop_counts: Tensor | None = None
    ) -> list[str]:
        """Greedy answers to left-padded prompts."""
        out = self.generate_ids(images, input_ids, attention_mask, crop_counts)
        return [s.strip() for s in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def predict(
        self,
        images,
        input_ids,
        attention_mask,
        answers=None,
        tasks=None,
        crop_counts=None,
        variants=None,
        metas=None,
        **meta,
    ) -> list[dict]:
        """Greedy answers, each with its reference ``answer``, ``task`` and (when the batch has them)
        ``variant`` (the evaluation it belongs to) and ``meta`` (a benchmark's question and image ids)."""
        predictions = self.generate(images, input_ids, attention_mask, crop_counts)
        none = [None] * len(predictions)
        out = [
            dict(prediction=p, answer=a, task=t)
            for p, a, t in zip(predictions, answers or none, tasks or none, strict=True)
        ]
        for row, variant, sample_meta in zip(out, variants or none, metas or none, strict=True):
            if variant is not None:
                row['variant'] = variant
            if sample_meta:
                row['meta'] = sample_meta  # question and image ids, for benchmark submission files
        return out


def _with_legacy_freeze(vision_encoder: Mapping, freeze: bool | None) -> Mapping:
    """The earlier model-level ``freeze_vision_encoder`` as ``vision_encoder.train``, with a warning."""
    if freeze is None:
        return vision_encoder
    train = 'frozen' if freeze else 'full'
    if vision_encoder.get('train', train) != train:
        raise ValueError(
            f'freeze_vision_encoder={freeze} contradicts vision_encoder.train={vision_encoder["train"]!r}; '
            'drop freeze_vision_encoder'
        )
    warnings.warn(
        f'freeze_vision_encoder={freeze} is now a setting of the encoder: drop it and write '
        f'vision_encoder = dict(..., train={train!r}) (docs/training.md)',
        FutureWarning,
        stacklevel=3,
    )
    return {**vision_encoder, 'train': train}
