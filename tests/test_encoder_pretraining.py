"""The encoder pretraining stage: it writes the file that vision_encoder.checkpoint loads, once, seeded by
its own settings alone, and it teaches the encoder the synthetic scenes' dense targets."""

import json

import numpy as np
import pytest
import torch
from mmengine.config import Config

from tests.helpers import run_tool
from vlkit.engine import encoder_pretraining as stage
from vlkit.registry import VISION_ENCODERS
from vlkit.testing import TINY_IMAGE_SIZE, tiny_encoder

SETTINGS = dict(iters=3, batch_size=4, bank_size=16)


def _cfg(root: str, **settings) -> Config:
    return Config(
        dict(
            data_root=root,
            image_size=TINY_IMAGE_SIZE,
            model=dict(vision_encoder=tiny_encoder()),
            encoder_pretraining=dict(SETTINGS, **settings),
        )
    )


def test_the_stage_runs_once_and_the_encoder_loads_its_file(tmp_path, synthetic_root, monkeypatch):
    cfg = _cfg(synthetic_root, seed=7)
    path = stage.ensure_pretrained_encoder(cfg)
    assert cfg.model.vision_encoder.checkpoint == str(path) and path.parent.name == 'encoders'
    report = json.loads(path.with_suffix('.json').read_text())
    targets = {'colour', 'shape', 'word', 'centre', 'object', 'place', 'count', 'tags'}
    assert set(report['held_out_accuracy']) == targets and report['iters'] == 3

    def fail(*args, **kwargs):
        raise AssertionError('pretraining ran again although its result was cached')

    monkeypatch.setattr(stage, '_pretrain', fail)
    again = _cfg(synthetic_root, seed=7)
    assert stage.ensure_pretrained_encoder(again) == path
    encoder = VISION_ENCODERS.build(again.model.vision_encoder.to_dict())
    saved = torch.load(path, weights_only=True)
    assert all(torch.equal(encoder.model.state_dict()[k], v) for k, v in saved.items())


def test_the_result_depends_on_the_settings_alone(synthetic_root, tmp_path):
    weights = []
    for noise in (0, 1):
        torch.manual_seed(noise)  # whatever ran before in the process
        np.random.seed(noise)
        path = stage.checkpoint_path(tiny_encoder(), stage.stage_settings(_cfg(synthetic_root, seed=3)))
        path = path.with_name(f'{noise}.pth')
        path.parent.mkdir(exist_ok=True)
        stage.pretrain_encoder(tiny_encoder(), stage.stage_settings(_cfg(synthetic_root, seed=3)), path)
        weights.append(torch.load(path, weights_only=True))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    other = stage.checkpoint_path(tiny_encoder(), stage.stage_settings(_cfg(synthetic_root, seed=4)))
    assert other != stage.checkpoint_path(tiny_encoder(), stage.stage_settings(_cfg(synthetic_root, seed=3)))


def test_unknown_settings_and_a_second_source_of_weights_are_refused(synthetic_root):
    with pytest.raises(KeyError, match=r"encoder_pretraining: unknown setting\(s\) \['iter'\]"):
        stage.stage_settings(Config(dict(encoder_pretraining=dict(iter=5))))
    cfg = _cfg(synthetic_root)
    cfg.model.vision_encoder.checkpoint = 'vit.pth'
    with pytest.raises(ValueError, match="vision_encoder.checkpoint='vit.pth' and encoder_pretraining both"):
        stage.ensure_pretrained_encoder(cfg)


def test_pretraining_improves_the_dense_targets(synthetic_root):
    enc = VISION_ENCODERS.build(tiny_encoder())
    torch.manual_seed(0)
    settings = dict(image_size=32, iters=150, batch_size=32, lr=3e-3, bank_size=256, seed=0, precision='fp32')
    acc = stage._pretrain(enc, settings)
    assert acc['colour'] > 85 and acc['count'] > 40  # background alone is ~80% of patches; chance count 25%


def test_patch_targets_take_the_majority_label_of_a_quarter_of_the_patch():
    colour = np.zeros((4, 4), dtype=np.uint8)
    colour[0, 0] = 2  # 1 of 4 pixels of the top-left 2 x 2 patch: a quarter, kept
    colour[2:4, 2:4] = 3  # the whole bottom-right patch
    colour[0, 2] = 1  # 1 of 4 pixels ... kept, and centre needs only 1 pixel
    centre = np.zeros((4, 4), dtype=np.uint8)
    centre[3, 0] = 1
    out = stage.patch_targets({'colour': colour, 'centre': centre}, patch=2)
    assert out['colour'].tolist() == [[2, 1], [0, 3]] and out['centre'].tolist() == [[0, 0], [1, 0]]


def test_the_image_tags_name_coloured_shapes_and_the_word_but_not_where_they_are():
    """Benchmark format 3: the mean token is taught what is in the image, never where (docs/data.md)."""
    from vlkit.data import synthetic

    def tags(*shapes):
        return stage.scene_tags(synthetic.Scene([synthetic.Shape(*s) for s in shapes], 'dog', 10))

    scene = tags(('triangle', 'red', 3, 1), ('circle', 'blue', 0, 0))
    assert scene.shape == (6 * 4 + 8,) and scene.sum() == 3
    red_triangle, blue_circle, dog = 0 * 4 + 2, 2 * 4 + 0, 24 + 1  # colour * 4 + shape; then the words
    assert np.flatnonzero(scene).tolist() == [red_triangle, blue_circle, dog]
    assert np.array_equal(scene, tags(('triangle', 'red', 0, 0), ('circle', 'blue', 3, 1)))  # cells swapped


@pytest.mark.slow
def test_the_tool_runs_the_stage_of_a_config(synthetic_root):
    out = run_tool(
        'pretrain_encoder.py', 'configs/blip3_perceiver.py', '--cfg-options', f'data_root={synthetic_root}',
        f'image_size={TINY_IMAGE_SIZE}', 'encoder_pretraining.iters=2', 'encoder_pretraining.bank_size=8',
        *(f'vision_encoder.model_kwargs.{k}={v}' for k, v in tiny_encoder()['model_kwargs'].items()),
    )  # fmt: skip
    written = out.stdout.strip().splitlines()[-1]
    assert written.startswith('encoder_pretraining: ') and written.endswith('.pth')
    assert torch.load(written.split(': ', 1)[1], weights_only=True)
