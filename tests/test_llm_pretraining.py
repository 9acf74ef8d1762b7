"""The LLM pretraining stage: it teaches the tiny language model the benchmark's language, writes the
directory that language_model.pretrained loads, once, keyed by what its result depends on; a loaded
checkpoint runs no stage."""

import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from safetensors.torch import load_file

from tests.helpers import run_tool
from vlkit.config import load_config
from vlkit.data import synthetic
from vlkit.engine import llm_pretraining as stage
from vlkit.inference import load_model
from vlkit.registry import LANGUAGE_MODELS, MODELS
from vlkit.testing import tiny_language_model, tiny_options
from vlkit.tokenization import build_tokenizer

SETTINGS = dict(iters=150, batch_size=32, lr=3e-3)
FROZEN = 'configs/blip3_perceiver_frozen_llm.py'
LORA = 'configs/blip3_perceiver_lora_llm.py'
EMBEDDINGS = 'model.embed_tokens.weight'


def _cfg(root: str, **settings) -> Config:
    return Config(
        dict(
            data_root=root,
            model=dict(language_model=tiny_language_model(root)),
            llm_pretraining=dict(SETTINGS, **settings),
        )
    )


def _shipped(config: str, root: str, **settings) -> Config:
    """A shipped config at the tiny sizes, with the stage on at the tests' settings."""
    return load_config(config, {**tiny_options(root, 2), 'llm_pretraining': dict(SETTINGS, **settings)})


def _fail(*args, **kwargs):
    raise AssertionError('the language model was pretrained again')


@pytest.fixture(scope='module')
def pretrained(synthetic_root) -> tuple[Config, Path]:
    cfg = _cfg(synthetic_root)
    return cfg, stage.ensure_pretrained_llm(cfg)


def test_pretraining_teaches_the_language_but_not_the_answers(pretrained):
    _, path = pretrained
    record = json.loads(path.with_suffix('.json').read_text())
    before, after = record['held_out']['before'], record['held_out']['after']
    assert record['iters'] == SETTINGS['iters']
    assert list(after['valid_answer_per_task']) == list(synthetic.TASKS)
    assert before['loss'] > 3.5 and after['loss'] < 0.6  # uniform over the 56 tokens: 4.03; the text: 0.40
    assert before['valid_answer'] < 20 and after['valid_answer'] >= 95
    assert after['accuracy'] < 40  # the answers are drawn at random given the question: chance is 26%


def test_the_directory_is_what_language_model_pretrained_loads(pretrained, synthetic_root):
    cfg, path = pretrained
    assert cfg.model.language_model.pretrained == str(path) and path.parent == Path(synthetic_root) / 'llms'
    saved = load_file(path / 'model.safetensors')
    llm = LANGUAGE_MODELS.build(cfg.model.language_model.to_dict())
    state = llm.model.state_dict()
    assert set(saved) <= set(state) and all(torch.equal(state[k], v) for k, v in saved.items())
    random = LANGUAGE_MODELS.build(tiny_language_model(synthetic_root)).model.state_dict()
    assert not torch.equal(random[EMBEDDINGS], saved[EMBEDDINGS])
    held_out = stage._samples(stage.DEFAULTS['seed'] + 1, stage.HELD_OUT_SAMPLES)
    measured = stage.held_out_metrics(llm.model, llm.tokenizer, held_out, 'fp32')  # the trained weights
    assert measured == json.loads(path.with_suffix('.json').read_text())['held_out']['after']


def test_a_second_call_reuses_the_result(pretrained, synthetic_root, monkeypatch):
    _, path = pretrained
    monkeypatch.setattr(stage, '_pretrain', _fail)
    again = _cfg(synthetic_root)
    assert stage.ensure_pretrained_llm(again) == path and again.model.language_model.pretrained == str(path)


@pytest.mark.parametrize('config, trains', [(FROZEN, ()), (LORA, ('lora_',))])
def test_the_shipped_configs_share_the_result_and_train_on_it(config, trains, pretrained, synthetic_root,
                                                              monkeypatch):  # fmt: skip
    _, path = pretrained
    monkeypatch.setattr(stage, '_pretrain', _fail)
    cfg = _shipped(config, synthetic_root)
    assert stage.ensure_pretrained_llm(cfg) == path  # the key leaves out the part's train mode
    llm = MODELS.build(cfg.model).language_model
    embeddings = llm.model.get_input_embeddings().weight
    assert torch.equal(embeddings, load_file(path / 'model.safetensors')[EMBEDDINGS])
    training = [n for n, p in llm.named_parameters() if p.requires_grad]
    assert all(any(t in n for t in trains) for n in training) and bool(training) == bool(trains)


def test_the_key_follows_the_settings_the_model_the_vocabulary_and_the_format(synthetic_root, monkeypatch):
    llm = tiny_language_model(synthetic_root)
    tokenizer = build_tokenizer(llm['tokenizer'])
    settings = stage.stage_settings(_cfg(synthetic_root))
    key = stage.pretrained_dir(llm, settings, tokenizer)
    for other in (dict(seed=1), dict(lr=1e-3), dict(iters=151), dict(precision='bf16')):
        assert stage.pretrained_dir(llm, dict(settings, **other), tokenizer) != key, other
    deeper = dict(llm, model=dict(llm['model'], num_hidden_layers=3))
    assert stage.pretrained_dir(deeper, settings, tokenizer) != key
    same = dict(llm, train='lora', lora=dict(r=4), pretrained=None)
    assert stage.pretrained_dir(same, settings, tokenizer) == key
    grown = build_tokenizer(llm['tokenizer'])
    grown.add_tokens(['zebra'])
    assert stage.pretrained_dir(llm, settings, grown) != key
    monkeypatch.setattr(synthetic, 'FORMAT_VERSION', synthetic.FORMAT_VERSION + 1)
    assert stage.pretrained_dir(llm, settings, tokenizer) != key


def test_unknown_settings_and_a_second_source_of_weights_are_refused(synthetic_root):
    known = "['batch_size', 'data_root', 'iters', 'lr', 'precision', 'seed']"
    with pytest.raises(KeyError) as err:
        stage.stage_settings(Config(dict(llm_pretraining=dict(iter=5))))
    assert f"llm_pretraining: unknown setting(s) ['iter']; it takes {known}" in str(err.value)
    assert stage.stage_settings(Config(dict(llm_pretraining=None))) is None
    cfg = _cfg(synthetic_root)
    cfg.model.language_model.pretrained = 'llm/'
    with pytest.raises(ValueError, match="language_model.pretrained='llm/' and llm_pretraining both set"):
        stage.ensure_pretrained_llm(cfg)
    cfg = _cfg(synthetic_root)
    cfg.model.language_model.model = 'HuggingFaceTB/SmolLM2-135M'
    with pytest.raises(ValueError, match="language_model.model is 'HuggingFaceTB/SmolLM2-135M'"):
        stage.ensure_pretrained_llm(cfg)


def test_loading_a_checkpoint_runs_no_stage(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setattr(stage, '_pretrain', _fail)
    cfg = _shipped(FROZEN, synthetic_root, seed=5)  # no result cached for this seed
    checkpoint = tmp_path / 'model.pth'
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict()}, checkpoint)
    model = load_model(cfg, str(checkpoint))
    assert cfg.llm_pretraining is None and cfg.model.language_model.get('pretrained') is None
    assert torch.equal(
        model.language_model.model.get_input_embeddings().weight,
        torch.load(checkpoint, weights_only=True)['state_dict']['language_model.model.' + EMBEDDINGS],
    )


@pytest.mark.slow
def test_the_tools_pretrain_alone_and_evaluate_without_the_stage(synthetic_root, tmp_path):
    options = [f'{k}={v}' for k, v in tiny_options(synthetic_root, 2).items() if k != 'llm_pretraining']
    stage_options = ['llm_pretraining.iters=2', 'llm_pretraining.batch_size=4', 'llm_pretraining.seed=6']
    only_llm = ['--stage', 'llm_pretraining']
    out = run_tool('pretrain.py', FROZEN, *only_llm, '--cfg-options', *options, *stage_options)
    written = out.stdout.strip().splitlines()[-1]
    assert written.startswith('llm_pretraining: ')
    assert load_file(Path(written.split(': ', 1)[1]) / 'model.safetensors')

    cached = set((Path(synthetic_root) / 'llms').iterdir())
    cfg = _shipped(FROZEN, synthetic_root, seed=7)
    checkpoint = tmp_path / 'model.pth'
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict()}, checkpoint)
    work_dir = tmp_path / 'eval'
    stage_options = ['llm_pretraining.iters=2', 'llm_pretraining.batch_size=4', 'llm_pretraining.seed=7']
    run_tool('test.py', FROZEN, str(checkpoint), '--work-dir', str(work_dir), '--cfg-options', *options,
             *stage_options)  # fmt: skip
    assert set((Path(synthetic_root) / 'llms').iterdir()) == cached
    (dumped,) = work_dir.glob('*.py')
    assert 'llm_pretraining' not in dumped.read_text()


def test_every_pretraining_stage_has_what_runs_it():
    from vlkit.engine import PRETRAINING, PRETRAINING_STAGES

    assert tuple(PRETRAINING) == PRETRAINING_STAGES


@pytest.mark.slow
def test_the_tool_names_a_stage_the_config_lacks(synthetic_root):
    out = run_tool('pretrain.py', 'configs/blip3_perceiver.py', '--stage', 'llm_pretraining', check=False)
    assert out.returncode != 0 and 'has no llm_pretraining stage' in out.stderr
