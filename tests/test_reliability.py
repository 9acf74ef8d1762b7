"""Nothing lost: atomic checkpoints, a resume that falls back, non-finite guards, bad data counted."""

from __future__ import annotations

import glob
import json
import os
import os.path as osp
import re
import socket
import subprocess
import sys
import tarfile
from collections import deque
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.helpers import kill_after, run_tool, write_shard
from vlkit.engine.checkpoint import (
    AtomicCheckpointHook,
    find_resumable_checkpoint,
    is_readable_checkpoint,
    load_checkpoint_file,
)
from vlkit.testing import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
CONFIG = 'configs/llava_linear.py'


def _train(*args: str) -> subprocess.CompletedProcess:
    return run_tool('train.py', *args, check=False, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')


def _ok(result: subprocess.CompletedProcess) -> str:
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    return out


def _opts(synthetic_root: str, work_dir: str, iters: int, *extra: str, interval: int | None = None) -> list:
    opts = tiny_overrides(synthetic_root, work_dir, iters)
    if interval is not None:
        opts.append(f'default_hooks.checkpoint.interval={interval}')
    return [*opts, *extra]


def _truncate(path: str) -> None:
    size = osp.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(size // 2)


# -- 1. atomic checkpoints and a resume that falls back ------------------------------------------------


class _FakeRunner:
    """The parts of a Runner the checkpoint hook touches; ``save_checkpoint`` can die half-way."""

    def __init__(self, work_dir: str, fail: bool = False) -> None:
        self.work_dir = work_dir
        self.fail = fail
        self.message_hub = SimpleNamespace(update_info=lambda *a: None)

    def save_checkpoint(self, out_dir: str, filename: str, **kwargs) -> None:
        with open(osp.join(out_dir, filename), 'wb') as f:
            torch.save({'step': filename}, f)
            if self.fail:
                f.truncate(10)
                raise KeyboardInterrupt('killed while writing')


def _hook(work_dir: str, max_keep: int = 2) -> AtomicCheckpointHook:
    hook = AtomicCheckpointHook(interval=1, by_epoch=False, max_keep_ckpts=max_keep)
    hook.out_dir, hook.keep_ckpt_ids = work_dir, deque([], max_keep)
    return hook


def test_a_write_killed_half_way_leaves_the_previous_checkpoint_and_pointer(tmp_path):
    work_dir = str(tmp_path)
    hook = _hook(work_dir)
    hook._save_checkpoint_with_step(_FakeRunner(work_dir), 1, {})
    with pytest.raises(KeyboardInterrupt):
        hook._save_checkpoint_with_step(_FakeRunner(work_dir, fail=True), 2, {})
    assert not osp.exists(tmp_path / 'iter_2.pth')
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_1.pth')
    assert is_readable_checkpoint(str(tmp_path / 'iter_1.pth'))[0]
    assert find_resumable_checkpoint(work_dir) == str(tmp_path / 'iter_1.pth')


def test_old_checkpoints_are_dropped_only_after_the_new_one_is_written(tmp_path):
    work_dir = str(tmp_path)
    hook = _hook(work_dir, max_keep=2)
    for step in (1, 2, 3):
        hook._save_checkpoint_with_step(_FakeRunner(work_dir), step, {})
    assert sorted(os.listdir(tmp_path)) == ['iter_2.pth', 'iter_3.pth', 'last_checkpoint']
    with pytest.raises(KeyboardInterrupt):
        hook._save_checkpoint_with_step(_FakeRunner(work_dir, fail=True), 4, {})
    assert {'iter_2.pth', 'iter_3.pth'} <= set(os.listdir(tmp_path))


def test_resume_takes_only_training_checkpoints_and_none_when_all_are_unreadable(tmp_path):
    torch.save({'w': torch.ones(1)}, tmp_path / 'encoder_weights.pth')
    (tmp_path / 'iter_2.pth').write_bytes(b'PK\x03\x04 cut short')
    assert find_resumable_checkpoint(str(tmp_path)) is None


@pytest.mark.slow
def test_resume_skips_a_truncated_newest_checkpoint_with_a_warning(synthetic_root, tmp_path):
    work_dir = str(tmp_path / 'run')
    _ok(_train(CONFIG, *_opts(synthetic_root, work_dir, 8, interval=4)))
    assert (tmp_path / 'run' / 'last_checkpoint').read_text() == osp.join(work_dir, 'iter_8.pth')
    assert not glob.glob(osp.join(work_dir, '*.tmp'))
    _truncate(osp.join(work_dir, 'iter_8.pth'))

    out = _ok(_train(CONFIG, '--resume', *_opts(synthetic_root, work_dir, 12, interval=4)))
    assert 'iter_8.pth is unreadable' in out
    assert f'resuming from {osp.join(work_dir, "iter_4.pth")}' in out and 'resumed' in out.lower()
    ckpt = load_checkpoint_file(osp.join(work_dir, 'iter_12.pth'))
    assert ckpt['meta']['iter'] == 12


# -- 2. non-finite guard ----------------------------------------------------------------------------------


def _poisoned_config(tmp_path: Path, poison_at: list[int], poison: str) -> str:
    path = tmp_path / f'poisoned_{poison}.py'
    path.write_text(
        f'_base_ = [{str(ROOT / CONFIG)!r}]\n'
        "custom_imports = dict(imports=['tests.poison'], allow_failed_imports=False)\n"
        "model_settings = dict(type='PoisonedVisionLanguageModel', "
        f'poison_at={poison_at}, poison={poison!r})\n'
    )
    return str(path)


def _all_finite(path: str) -> bool:
    state = load_checkpoint_file(path)['state_dict']
    return all(v.isfinite().all() for v in state.values() if v.is_floating_point())


@pytest.mark.slow
@pytest.mark.parametrize('poison, named', [('loss', 'loss=nan'), ('grad', 'gradient norm=nan')])
def test_a_non_finite_step_stops_the_run_naming_it_and_saves_nothing_after(
    poison, named, synthetic_root, tmp_path
):
    work_dir = str(tmp_path / 'run')
    config = _poisoned_config(tmp_path, [3], poison)
    result = _train(config, *_opts(synthetic_root, work_dir, 6, interval=1))
    assert result.returncode != 0
    assert f'iteration 3: {named} (loss terms: loss=' in result.stderr
    assert {'iter_1.pth', 'iter_2.pth'} <= set(os.listdir(work_dir))
    assert not glob.glob(osp.join(work_dir, 'iter_[3-9].pth'))
    assert all(_all_finite(p) for p in glob.glob(osp.join(work_dir, 'iter_*.pth')))


@pytest.mark.slow
def test_skip_mode_drops_the_step_counts_it_and_goes_on(synthetic_root, tmp_path):
    work_dir = str(tmp_path / 'run')
    config = _poisoned_config(tmp_path, [2, 4], 'loss')
    out = _ok(_train(config, *_opts(synthetic_root, work_dir, 6, 'default_hooks.non_finite.action=skip')))
    assert 'skipped the update at iteration 2: loss=nan' in out
    assert '2 step(s) skipped so far' in out and 'skipped_steps: 2' in out
    assert _all_finite(osp.join(work_dir, 'iter_6.pth'))


# -- 3. bad data --------------------------------------------------------------------------------------------


def _members(synthetic_root: str, count: int) -> list[tuple[str, bytes]]:
    """The first ``count`` members of the synthetic train split's first shard."""
    with tarfile.open(osp.join(synthetic_root, 'train-00000.tar')) as tar:
        members = [m for m in tar.getmembers() if m.isfile()][:count]
        return [(m.name, tar.extractfile(m).read()) for m in members]


@pytest.fixture
def bad_data_config(synthetic_root, tmp_path) -> str:
    """Two good shards, one with a corrupt image, one truncated mid-member, one missing; tiny model."""
    members = _members(synthetic_root, 30)
    shards = [write_shard(tmp_path / f'good-{i:05d}.tar', members[10 * i : 10 * i + 10]) for i in range(2)]
    corrupt = [*members[20:28], (members[28][0], b'\x89PNG\r\n\x1a\n not an image'), members[29]]
    shards.append(write_shard(tmp_path / 'corrupt-00000.tar', corrupt))
    truncated = write_shard(tmp_path / 'truncated-00000.tar', members[:10])
    with tarfile.open(truncated) as tar:
        cut = tar.getmembers()[4].offset_data + 10
    with open(truncated, 'r+b') as f:
        f.truncate(cut)
    shards += [truncated, str(tmp_path / 'missing-00000.tar')]
    path = tmp_path / 'bad_data.py'
    path.write_text(
        f'_base_ = [{str(ROOT / CONFIG)!r}]\n'
        'train_dataloader = dict(dataset=dict(_delete_=True, type="ConversationShards", '
        f'shards={shards!r}, tokenizer=None, image_size=None, shuffle_buffer=8))\n'
    )
    return str(path)


@pytest.mark.slow
def test_bad_samples_are_skipped_counted_by_reason_and_written(bad_data_config, synthetic_root, tmp_path):
    work_dir = str(tmp_path / 'run')
    extra = ('default_hooks.data_skips.interval=2', 'default_hooks.data_skips.max_skip_rate=None')
    out = _ok(_train(bad_data_config, *_opts(synthetic_root, work_dir, 6, *extra)))
    report = json.loads((tmp_path / 'run' / 'data_skips.json').read_text())
    assert report['iter'] == 6 and report['samples_read'] >= 6 * 8
    assert set(report['skipped']) == {'corrupt_image', 'truncated_tar', 'missing_shard'}
    assert {osp.basename(s) for s in report['shards']} == {
        'corrupt-00000.tar',
        'truncated-00000.tar',
        'missing-00000.tar',
    }
    assert 'bad samples skipped' in out and "'missing_shard':" in out


@pytest.mark.slow
def test_strict_data_stops_the_run_naming_the_reason_and_shard(bad_data_config, synthetic_root, tmp_path):
    work_dir = str(tmp_path / 'run')
    result = _train(
        bad_data_config, *_opts(synthetic_root, work_dir, 6, 'train_dataloader.dataset.strict=True')
    )
    assert result.returncode != 0
    reasons = 'corrupt_image|truncated_tar|missing_shard'
    assert re.search(rf'training stopped: ({reasons}) in shard \S+-00000\.tar: \w+Error', result.stderr)
    assert not glob.glob(osp.join(work_dir, '*.pth'))


@pytest.mark.slow
def test_a_skip_rate_over_the_threshold_stops_the_run_naming_the_shards(
    bad_data_config, synthetic_root, tmp_path
):
    work_dir = str(tmp_path / 'run')
    extra = [f'default_hooks.data_skips.{k}' for k in ('interval=1', 'max_skip_rate=0.01', 'min_samples=10')]
    result = _train(bad_data_config, *_opts(synthetic_root, work_dir, 6, *extra))
    assert result.returncode != 0
    message = result.stderr[result.stderr.index('training stopped: ') :]
    assert 'max_skip_rate=0.01' in message and 'by iteration 1' in message
    assert 'missing-00000.tar' in message


# -- 5. exact resume ----------------------------------------------------------------------------------------


def _state(path: str) -> dict:
    return load_checkpoint_file(path)['state_dict']


@pytest.mark.slow
def test_a_run_killed_and_resumed_equals_a_straight_run_bit_for_bit(synthetic_root, tmp_path):
    dropout = 'language_model.model.attention_dropout=0.2'  # random draws in every step
    straight, killed = str(tmp_path / 'straight'), str(tmp_path / 'killed')
    _ok(_train(CONFIG, *_opts(synthetic_root, straight, 8, dropout)))
    kill_after(
        [CONFIG, *_opts(synthetic_root, killed, 8, dropout, interval=1)], osp.join(killed, 'iter_3.pth')
    )
    assert not osp.exists(osp.join(killed, 'iter_8.pth'))

    out = _ok(_train(CONFIG, '--resume', *_opts(synthetic_root, killed, 8, dropout, interval=1)))
    assert 'resumed' in out.lower()
    a, b = _state(osp.join(straight, 'iter_8.pth')), _state(osp.join(killed, 'iter_8.pth'))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


# -- 6. distributed -----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_ddp_keeps_ranks_identical_and_the_loss_falls(synthetic_root, tmp_path):
    work_dir = str(tmp_path / 'ddp')
    config = tmp_path / 'probed.py'
    config.write_text(
        f'_base_ = [{str(ROOT / CONFIG)!r}]\n'
        "custom_imports = dict(imports=['tests.dist_probe'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='RankProbeHook')]\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    env.update(PYTHON=sys.executable, PORT=str(_free_port()))
    result = subprocess.run(
        [
            'bash',
            str(ROOT / 'tools' / 'dist_train.sh'),
            str(config),
            '2',
            *_opts(synthetic_root, work_dir, 12),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    _ok(result)
    ranks = [torch.load(osp.join(work_dir, f'rank{r}.pth'), weights_only=True) for r in (0, 1)]
    assert [r['world_size'] for r in ranks] == [2, 2]
    assert ranks[0]['batches'] == ranks[1]['batches'] == 12
    assert not torch.equal(ranks[0]['first_ids'], ranks[1]['first_ids'])  # each rank reads its own data
    a, b = ranks[0]['state_dict'], ranks[1]['state_dict']
    assert all(torch.equal(a[k], b[k]) for k in a)
    (scalars,) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    losses = [json.loads(line)['loss'] for line in open(scalars) if '"loss"' in line]
    assert losses[-1] < losses[0]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the refusal on a machine without CUDA')
@pytest.mark.parametrize('strategy', ['fsdp', 'deepspeed'])
def test_gpu_only_strategies_are_refused_on_a_cpu_naming_them(strategy, synthetic_root, tmp_path):
    config = tmp_path / f'{strategy}.py'
    base = [str(ROOT / CONFIG), str(ROOT / 'configs' / '_base_' / 'strategies' / f'{strategy}.py')]
    config.write_text(f'_base_ = {base!r}\n')
    result = _train(str(config), *_opts(synthetic_root, str(tmp_path / 'run'), 2))
    assert result.returncode != 0
    assert f'{config}: strategy=' in result.stderr and 'needs CUDA GPUs' in result.stderr
