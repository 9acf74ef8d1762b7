"""Shared fixtures: a small synthetic benchmark and tiny model configs. No network, no downloads."""

from __future__ import annotations

import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import pytest  # noqa: E402
import torch  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

TINY_SPLITS = {'train': 400, 'val': 60, 'test': 60}
TINY_IMAGE_SIZE = 32


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope='session', autouse=True)
def vlkit_scope():
    DefaultScope.get_instance('vlkit-tests', scope_name='vlkit')


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory) -> str:
    """A small synthetic benchmark at 32 px, also exported as VLKIT_DATA_ROOT for configs."""
    from vlkit.data.prepare import ensure_synthetic_data

    root = ensure_synthetic_data(
        tmp_path_factory.mktemp('data') / 'synthetic',
        TINY_SPLITS,
        TINY_IMAGE_SIZE,
        shard_size=100,
        verbose=False,
    )
    os.environ['VLKIT_DATA_ROOT'] = str(root)
    return str(root)


def write_shard(path, members: list[tuple[str, bytes]]) -> str:
    """Writes a webdataset tar shard of ``(member name, bytes)`` pairs; returns its path."""
    import io
    import tarfile

    with tarfile.open(path, 'w') as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def tiny_encoder() -> dict:
    return dict(
        type='TimmVisionEncoder',
        model_name='vit_tiny_patch16_224',
        model_kwargs=dict(
            img_size=TINY_IMAGE_SIZE,
            patch_size=8,
            embed_dim=32,
            depth=1,
            num_heads=2,
            class_token=False,
            global_pool='avg',
        ),
    )


def tiny_language_model(data_root: str) -> dict:
    return dict(
        type='HFCausalLM',
        model=dict(
            model_type='llama',
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=256,
        ),
        tokenizer=dict(type='synthetic_tokenizer', data_root=data_root),
    )


def tiny_model_cfg(data_root: str, connector: dict | None = None, fusion: dict | None = None) -> dict:
    return dict(
        type='VisionLanguageModel',
        vision_encoder=tiny_encoder(),
        connector=connector or dict(type='MLPProjector'),
        language_model=tiny_language_model(data_root),
        fusion=fusion or dict(type='AutoregressiveFusion'),
        image_size=TINY_IMAGE_SIZE,
    )


def tiny_options(data_root: str, max_iters: int) -> dict:
    """Config overrides that shrink any experiment config to the tiny models and data."""
    opts = {
        'data_root': data_root,
        'image_size': TINY_IMAGE_SIZE,
        'train_cfg.max_iters': max_iters,
        'vision_encoder.pretrain': None,
        'train_dataloader.batch_size': 8,
        'val_dataloader.batch_size': 30,
        'default_hooks.logger.interval': 5,
        'default_hooks.checkpoint.interval': max_iters,
    }
    opts.update({f'vision_encoder.model_kwargs.{k}': v for k, v in tiny_encoder()['model_kwargs'].items()})
    llm = tiny_language_model(data_root)['model']
    opts.update({f'language_model.model.{k}': v for k, v in llm.items() if k != 'model_type'})
    return opts


def tiny_overrides(data_root: str, work_dir: str, max_iters: int) -> list[str]:
    """The same as command-line arguments for the tools: ``--work-dir DIR --cfg-options k=v ...``."""
    return [
        '--work-dir',
        work_dir,
        '--cfg-options',
        *(f'{k}={v}' for k, v in tiny_options(data_root, max_iters).items()),
    ]
