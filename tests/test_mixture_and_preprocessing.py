"""Data mixtures by weight (deterministic under the seed) and the encoder's declared image preprocessing,
filled into the datasets by load_config and applied by the data pipeline."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import IterableDataset

from tests.helpers import ROOT
from vlkit.config import load_config
from vlkit.data import MixtureDataset
from vlkit.data.transforms import image_to_tensor, images_to_crops, resolve_image_processor
from vlkit.models.encoders.hf_encoder import HFVisionEncoder


class Counting(IterableDataset):
    """An endless stream of ``{'name': name, 'n': 0, 1, ...}``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __len__(self) -> int:
        return 100

    def __iter__(self):
        return ({'name': self.name, 'n': n} for n in itertools.count())


def _mixture(seed: int = 0) -> MixtureDataset:
    sources = [
        dict(name='captions', weight=45, dataset=Counting('captions')),
        dict(name='documents', weight=45, dataset=Counting('documents')),
        dict(name='text', weight=10, dataset=Counting('text')),
    ]
    return MixtureDataset(sources, seed=seed, log_interval=0)


def test_mixture_samples_by_weight_deterministically_under_the_seed():
    mixture = _mixture()
    drawn = list(itertools.islice(iter(mixture), 4000))
    shares = Counter(s['source'] for s in drawn)
    assert shares['captions'] / 4000 == pytest.approx(0.45, abs=0.03)
    assert shares['text'] / 4000 == pytest.approx(0.10, abs=0.02)
    # each source's own stream goes on in order: what a source yields does not depend on the others
    assert [s['n'] for s in drawn if s['source'] == 'text'] == list(range(shares['text']))
    replay = [(s['source'], s['n']) for s in itertools.islice(iter(_mixture()), 4000)]
    assert replay == [(s['source'], s['n']) for s in drawn]  # what a resumed run replays
    other = [s['source'] for s in itertools.islice(iter(_mixture(seed=1)), 4000)]
    assert other != [s['source'] for s in drawn]
    assert mixture.skipped.summary()['sources'] == dict(shares)


def test_mixture_refuses_bad_weights():
    with pytest.raises(ValueError, match='positive weights'):
        MixtureDataset([dict(name='a', weight=0, dataset=Counting('a'))])


def _preprocessor_folder(tmp_path, **config):
    folder = tmp_path / 'clip'
    folder.mkdir()
    (folder / 'preprocessor_config.json').write_text(json.dumps(config))
    return str(folder)


def test_hf_encoder_declares_the_checkpoints_preprocessing(tmp_path):
    clip = _preprocessor_folder(
        tmp_path,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
        size={'shortest_edge': 336},
        crop_size={'height': 336, 'width': 336},
        do_center_crop=True,
        resample=3,
    )
    assert HFVisionEncoder.declared_preprocessing({'pretrained': clip, 'model': {}}) == {
        'mean': (0.48145466, 0.4578275, 0.40821073),
        'std': (0.26862954, 0.26130258, 0.27577711),
        'size': 336,
        'resample': 'bicubic',
        'shortest_edge': 336,  # CLIP resizes the shortest edge, then crops the centre
    }
    assert HFVisionEncoder.declared_preprocessing({'model': {'model_type': 'siglip_vision_model'}}) is None


def test_a_local_weights_name_declares_its_preprocessing(tmp_path, monkeypatch):
    from vlkit.pretrained import WEIGHTS_ENV

    _preprocessor_folder(
        tmp_path, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], size=112
    )
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))  # the name 'clip' is found under $VLKIT_WEIGHTS
    declared = HFVisionEncoder.declared_preprocessing({'model': 'clip'})
    assert declared == {
        'mean': (0.485, 0.456, 0.406),
        'std': (0.229, 0.224, 0.225),
        'size': 112,
        'resample': 'bicubic',
    }


CLIP_336 = dict(
    crop_size={'height': 336, 'width': 336},
    do_center_crop=True,
    do_convert_rgb=True,
    do_normalize=True,
    do_rescale=True,
    do_resize=True,
    image_mean=[0.48145466, 0.4578275, 0.40821073],
    image_std=[0.26862954, 0.26130258, 0.27577711],
    resample=3,
    rescale_factor=0.00392156862745098,
    size={'shortest_edge': 336},
)  # openai/clip-vit-large-patch14-336's preprocessor_config.json (its image_processor_type aside)


CLIP_336_FILE = dict(CLIP_336, size=336, crop_size=336)  # the file itself writes both sizes as numbers


@pytest.mark.parametrize('config', [CLIP_336, CLIP_336_FILE], ids=['dict sizes', 'number sizes'])
@pytest.mark.parametrize('size_wh', [(640, 480), (480, 640), (337, 1001), (336, 336), (200, 150)])
def test_clip_preprocessing_gives_hf_image_processors_pixel_values(tmp_path, size_wh, config):
    """A CLIP checkpoint's declared preprocessing, through vlkit, gives the pixel values of transformers'
    PIL CLIP image processor (the one LLaVA ran; transformers 5's default resizes with torchvision, whose
    bicubic differs by a level or two on under 1% of pixels): the shortest edge to 336, the centre 336 x
    336, CLIP's mean and std."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as CLIPImageProcessor

    clip = _preprocessor_folder(tmp_path, **config)
    processor = resolve_image_processor(
        HFVisionEncoder.declared_preprocessing({'pretrained': clip, 'model': {}})
    )
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (size_wh[1], size_wh[0], 3), dtype=np.uint8))
    expected = CLIPImageProcessor(**config)(image, return_tensors='pt')['pixel_values'][0]
    torch.testing.assert_close(image_to_tensor(image, 336, processor), expected, atol=1e-6, rtol=0)


def test_the_exported_clip_processor_crops_as_the_data_pipeline(tmp_path):
    """tools/export.py's image processor for a CLIP encoder resizes the shortest edge and crops the centre
    too (transformers 5's torchvision bicubic: within a few levels of PIL's)."""
    from vlkit.inference import image_preprocessing, image_processor
    from vlkit.models.hf_llava import hf_image_processor

    clip = _preprocessor_folder(tmp_path, **CLIP_336)
    declared = HFVisionEncoder.declared_preprocessing({'pretrained': clip, 'model': {}})
    exported = hf_image_processor({**declared, 'resample': 3})
    assert exported.do_center_crop and exported.size['shortest_edge'] == 336
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    ours = image_to_tensor(image, 336, resolve_image_processor(declared))
    theirs = exported(image, return_tensors='pt')['pixel_values'][0]
    assert ours.shape == theirs.shape == (3, 336, 336)
    assert (ours - theirs).abs().mean() < 2e-3
    # a model whose input is smaller than the declared crop: both keep the edge in proportion (224 of 336)
    cfg = {'model': {'vision_encoder': {'type': 'HFVisionEncoder', 'pretrained': clip}, 'image_size': 224}}
    small = image_preprocessing(cfg)
    assert small['shortest_edge'] == 224 and small['size'] == 224
    theirs = hf_image_processor(small)(image, return_tensors='pt')['pixel_values'][0]
    ours = image_to_tensor(image, 224, image_processor(cfg))
    assert (ours - theirs).abs().mean() < 2e-3


def test_a_model_trained_on_padded_images_is_exported_and_asked_with_padding(tmp_path):
    """LLaVA-1.5's stage 2 pads images to a square in the mean colour (``pad_to_square``): the model's
    preprocessing for questions and export says so, and the exported processor pads as the data did."""
    from vlkit.inference import image_preprocessing, image_processor, training_datasets
    from vlkit.models.hf_llava import hf_image_processor

    clip = _preprocessor_folder(tmp_path, **CLIP_336)
    model = {'vision_encoder': {'type': 'HFVisionEncoder', 'pretrained': clip}, 'image_size': 224}
    padded = dict(type='PreparedShards', data_dir='d', pad_to_square=True)
    mixture = dict(type='MixtureDataset', sources=[dict(name='a', weight=1, dataset=padded)] * 2)
    for dataset in (padded, mixture):
        cfg = {'model': model, 'train_dataloader': {'dataset': dataset}}
        assert len(training_datasets(cfg)) == (1 if dataset is padded else 2)
        assert image_processor(cfg)['pad'] and image_preprocessing(cfg)['pad']
    unpadded = {'model': model, 'train_dataloader': {'dataset': mixture | {'sources': [dict(dataset={})]}}}
    assert not image_preprocessing(unpadded)['pad'] and not image_preprocessing({'model': model})['pad']
    exported = hf_image_processor(image_preprocessing(cfg))
    assert type(exported).__name__ == 'LlavaImageProcessor' and exported.do_pad
    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (96, 48, 3), dtype=np.uint8))
    ours = image_to_tensor(image, 224, image_processor(cfg))
    theirs = exported(image, return_tensors='pt')['pixel_values'][0]
    assert ours.shape == theirs.shape == (3, 224, 224) and (ours - theirs).abs().mean() < 2e-3
    cropped = hf_image_processor(image_preprocessing(unpadded))(image, return_tensors='pt')['pixel_values'][0]
    assert (ours - cropped).abs().mean() > 0.1  # without the padding, the image would lose its sides


def test_a_hub_name_in_the_hugging_face_cache_declares_its_preprocessing(tmp_path, monkeypatch):
    """Weights that from_pretrained finds in the Hugging Face cache by their hub name declare their
    preprocessing from the cached preprocessor_config.json (nothing is fetched)."""
    snapshot = tmp_path / 'hub' / 'models--openai--clip-vit-large-patch14-336' / 'snapshots' / 'abc123'
    snapshot.mkdir(parents=True)
    (snapshot / 'preprocessor_config.json').write_text(json.dumps(CLIP_336))
    (snapshot.parents[1] / 'refs').mkdir()
    (snapshot.parents[1] / 'refs' / 'main').write_text('abc123')
    monkeypatch.setattr('huggingface_hub.constants.HF_HUB_CACHE', str(tmp_path / 'hub'))
    declared = HFVisionEncoder.declared_preprocessing({'model': 'openai/clip-vit-large-patch14-336'})
    assert declared is not None and declared['mean'] == tuple(CLIP_336['image_mean'])
    assert HFVisionEncoder.declared_preprocessing({'model': 'openai/not-cached'}) is None


def test_load_config_fills_the_declared_preprocessing_into_datasets_that_take_it(tmp_path, synthetic_root):
    siglip = _preprocessor_folder(
        tmp_path,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        size={'height': 32, 'width': 32},
        resample=2,
    )
    config = tmp_path / 'exp.py'
    config.write_text(
        f"_base_ = ['{ROOT}/configs/llava15_instruct.py']\n"
        + f"vision_encoder = dict(_delete_=True, type='HFVisionEncoder', model={siglip!r})\n"
    )
    cfg = load_config(str(config), {'data_root': synthetic_root})
    expected = {'mean': (0.5,) * 3, 'std': (0.5,) * 3, 'size': 32, 'resample': 'bilinear'}
    assert cfg.train_dataloader.dataset.image_processor == expected
    assert cfg.val_dataloader.dataset.image_processor == expected
    default = load_config('configs/llava_mlp.py', {'data_root': synthetic_root})
    assert 'image_processor' not in default.train_dataloader.dataset  # the synthetic data is untouched


def test_preprocessing_normalises_by_the_declared_mean_and_std_and_pads_with_the_mean_colour():
    image = Image.new('RGB', (4, 2), (255, 0, 51))  # wide: padded above and below
    processor = resolve_image_processor(
        {'mean': (0.5, 0.25, 0.2), 'std': (0.5, 0.25, 0.1)}, pad_to_square=True
    )
    x = image_to_tensor(image, 4, processor)
    assert x.shape == (3, 4, 4)
    # image rows (1 and 2) keep their colour: (255/255 - .5)/.5 = 1, (0 - .25)/.25 = -1, (51/255 - .2)/.1 = 0
    assert torch.allclose(x[:, 1:3], torch.tensor([1.0, -1.0, 0.0]).view(3, 1, 1).expand(3, 2, 4), atol=1e-6)
    # padding rows are the mean colour int(mean * 255) = (127, 63, 51): about 0 once normalised
    pad = (torch.tensor([127, 63, 51]) / 255.0 - torch.tensor([0.5, 0.25, 0.2])) / torch.tensor(
        [0.5, 0.25, 0.1]
    )
    assert torch.allclose(x[:, 0], pad.view(3, 1).expand(3, 4), atol=1e-6)
    assert resolve_image_processor(None) is None  # the default path: mean and std 0.5, bicubic, as ever
    default = image_to_tensor(image, 4)
    assert torch.equal(default, image_to_tensor(image, 4, None))
    crops, counts = images_to_crops([image], 2, dict(grids=[(1, 2)], global_view=True), processor)
    assert counts == [3] and crops.shape == (3, 3, 2, 2)  # any-resolution still works


def test_bad_preprocessing_is_refused_naming_it():
    with pytest.raises(ValueError, match="unknown keys \\['crop'\\]"):
        resolve_image_processor({'crop': 3})
    with pytest.raises(ValueError, match='resample in'):
        resolve_image_processor({'resample': 'cubic'})
