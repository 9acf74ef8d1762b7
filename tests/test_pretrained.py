"""Pretrained parts from a name or a local directory (vlkit.pretrained): where a name is looked for, a name
found nowhere refused naming the key, code shipped with a checkpoint run only when a config says so, and
profile-only builds that read no file."""

from __future__ import annotations

import json

import pytest

from vlkit.models.encoders import HFVisionEncoder
from vlkit.models.llms import HFCausalLM
from vlkit.pretrained import WEIGHTS_ENV, resolve_pretrained
from vlkit.testing import TINY_ENCODERS


def test_a_name_is_a_directory_then_a_copy_under_the_weights_root_then_a_hub_name(tmp_path, monkeypatch):
    root = tmp_path / 'weights'
    (root / 'org' / 'model').mkdir(parents=True)
    monkeypatch.setenv(WEIGHTS_ENV, str(root))
    assert resolve_pretrained('org/model') == str(root / 'org' / 'model')
    local = tmp_path / 'org' / 'model'
    local.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_pretrained('org/model') == 'org/model'  # a directory as given comes first
    assert resolve_pretrained('org/other') == 'org/other'  # for from_pretrained's own cache
    monkeypatch.setenv('HOME', str(tmp_path))
    assert resolve_pretrained('~/org/model') == str(local)


def test_a_name_found_nowhere_is_refused_naming_the_key_and_the_weights_root(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(OSError, match=rf"vision_encoder.pretrained='nobody/nothing' .* under {tmp_path}"):
        HFVisionEncoder(model='nobody/nothing', pretrained='nobody/nothing')


def _remote_code_checkpoint(folder, marker) -> None:
    """A checkpoint whose config names code of its own, which leaves ``marker`` behind when it runs."""
    folder.mkdir()
    (folder / 'config.json').write_text(
        json.dumps(
            {
                'model_type': 'probe',
                'auto_map': {'AutoConfig': 'probe.ProbeConfig', 'AutoModel': 'probe.ProbeModel'},
            }
        )
    )
    (folder / 'probe.py').write_text(
        f'open({str(marker)!r}, "w").write("ran")\n'
        'from transformers import PretrainedConfig, PreTrainedModel\n'
        'class ProbeConfig(PretrainedConfig):\n    model_type = "probe"\n'
        'class ProbeModel(PreTrainedModel):\n    config_class = ProbeConfig\n'
    )


def test_code_shipped_with_a_checkpoint_runs_only_when_the_config_says_so(tmp_path):
    folder, marker = tmp_path / 'checkpoint', tmp_path / 'ran.txt'
    _remote_code_checkpoint(folder, marker)
    with pytest.raises(ValueError, match='trust_remote_code'):
        HFVisionEncoder(model=str(folder))
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 (the probe is no working model; only that it ran counts)
        HFVisionEncoder(model=str(folder), trust_remote_code=True)
    assert marker.read_text() == 'ran'


def test_profile_only_builds_stand_in_a_tokenizer_of_the_declared_vocabulary():
    cfg = dict(type='HFCausalLM', model=dict(model_type='llama', vocab_size=321), tokenizer='org/model',
               pretrained='org/model')  # fmt: skip
    built = HFCausalLM.without_weights(cfg)
    assert built['pretrained'] is None
    assert built['tokenizer'] == dict(type='vocab_size_tokenizer', vocab_size=321)
    with pytest.raises(
        ValueError, match='language_model.tokenizer is .org/model., so write language_model.model.vocab_size'
    ):
        HFCausalLM.without_weights({**cfg, 'model': dict(model_type='llama')})
    assert HFVisionEncoder.without_weights(TINY_ENCODERS['HFVisionEncoder'])['pretrained'] is None


def test_processes_that_ask_for_a_packaged_checkpoint_at_once_convert_it_once(tmp_path, monkeypatch):
    import threading
    import time

    from vlkit.models import packaged_weights

    conversions = []

    def convert(source, out):
        conversions.append(source)
        time.sleep(0.3)  # long enough for the other caller to arrive meanwhile
        (out / 'weights.bin').write_bytes(b'converted')

    fake = packaged_weights.PackagedCheckpoint('pytest', 'pytest', '__init__.py', convert, 'a test entry')
    monkeypatch.setitem(packaged_weights.PACKAGED, 'fake', fake)
    found = []
    callers = [
        threading.Thread(target=lambda: found.append(packaged_weights.ensure_packaged('fake', str(tmp_path))))
        for _ in range(2)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(conversions) == 1 and len(found) == 2 and found[0] == found[1]
    assert (tmp_path / packaged_weights.PACKAGED_PREFIX / 'fake' / 'weights.bin').read_bytes() == b'converted'
