"""Fixtures: a small synthetic benchmark and the vlkit default scope. No network, no downloads. Presets and
helpers live in tests/helpers.py."""

from __future__ import annotations

import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')
# One OpenMP thread per pytest-xdist worker, for the worker and every tool it starts, unless set: `make test`
# runs as many workers as cores, and workers with several threads each spin against each other (containers
# may also report the host's cores, not their share). Raise TEST_WORKERS on a bigger machine instead.
if 'PYTEST_XDIST_WORKER' in os.environ:
    for _variable in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ.setdefault(_variable, '1')

import pytest  # noqa: E402
import torch  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

from vlkit.testing import TINY_IMAGE_SIZE, TINY_SPLITS  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


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
