import pytest
import torch

from vlkit.data import SyntheticShards, vlm_collate
from vlkit.registry import MODELS
from vlkit.testing import tiny_model_cfg


@pytest.fixture(scope='module')
def batches(synthetic_root):
    kwargs = dict(
        data_root=synthetic_root,
        image_size=32,
        tokenizer=dict(type='synthetic_tokenizer', data_root=synthetic_root),
    )
    train = SyntheticShards('train', **kwargs)
    val = SyntheticShards('val', mode='generate', **kwargs)
    it = iter(train)
    return [vlm_collate([next(it) for _ in range(16)]) for _ in range(4)], vlm_collate(list(val)[:12])


def _build(synthetic_root, **kwargs):
    torch.manual_seed(0)
    return MODELS.build(tiny_model_cfg(synthetic_root, **kwargs))


def test_builder_fills_connector_dimensions(synthetic_root):
    model = _build(
        synthetic_root,
        connector=dict(type='PerceiverResampler', num_latents=4, depth=1, num_heads=2, head_dim=8),
    )
    assert model.connector.in_dim == model.vision_encoder.out_dim == 32
    assert model.connector.out_dim == model.language_model.hidden_size == 48


def test_frozen_encoder_stays_frozen_and_in_eval_mode(synthetic_root, batches):
    model = _build(synthetic_root)
    model.train()
    assert not model.vision_encoder.training
    assert not any(p.requires_grad for p in model.vision_encoder.parameters())
    model(**batches[0][0], mode='loss')['loss'].backward()
    assert all(p.grad is None for p in model.vision_encoder.parameters())
    assert all(p.grad is not None for p in model.connector.parameters())


def test_loss_falls_in_a_short_training(synthetic_root, batches):
    model = _build(synthetic_root)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    train, _ = batches
    losses = []
    for step in range(30):
        loss = model(**train[step % len(train)], mode='loss')['loss']
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.6 * first, f'loss did not fall: {first:.3f} -> {last:.3f}'


def test_generation_equals_greedy_teacher_forcing_with_left_padding(synthetic_root, batches):
    model = _build(synthetic_root).eval()
    _, val = batches
    model.max_new_tokens = 3
    answers = model.generate(val['images'], val['input_ids'], val['attention_mask'])
    tok, image_id = model.tokenizer, model.language_model.image_token_id
    for i in range(len(answers)):
        real = val['attention_mask'][i].bool()
        ids = val['input_ids'][i][real][None]
        generated = []
        for _ in range(3):
            logits = model(val['images'][i : i + 1], ids, torch.ones_like(ids), mode='tensor')[0, -1]
            logits[image_id] = -float('inf')
            nxt = int(logits.argmax())
            if nxt == tok.eos_token_id:
                break
            generated.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
        assert answers[i] == tok.decode(generated, skip_special_tokens=True).strip()
    assert len({int(m.sum()) for m in val['attention_mask']}) > 1, 'the batch should mix prompt lengths'


def test_predict_returns_answers_and_tasks(synthetic_root, batches):
    model = _build(synthetic_root).eval()
    _, val = batches
    out = model(**val, mode='predict')
    assert len(out) == 12 and set(out[0]) == {'prediction', 'answer', 'task'}
    assert [o['answer'] for o in out] == val['answers']


@pytest.mark.slow
def test_compiled_parts_give_the_eager_values(synthetic_root, fusion='CrossAttentionFusion'):
    # cross-attention: both the connector and the fusion's blocks are compiled
    from vlkit.testing import TEXTS, TINY_CONNECTORS, TINY_FUSIONS, text_batch

    results = []
    for compile in (False, True):
        torch.manual_seed(0)
        cfg = tiny_model_cfg(
            synthetic_root,
            connector=dict(type='PerceiverResampler', **TINY_CONNECTORS['PerceiverResampler']),
            fusion=dict(type=fusion, **TINY_FUSIONS[fusion]),
        )
        model = MODELS.build(dict(cfg, compile=compile))
        with torch.no_grad():
            for name, p in model.fusion.named_parameters():
                if name.endswith('_gate'):
                    p.fill_(1.0)  # open the cross-attention gates, so the blocks count
        batch = text_batch(model, TEXTS)
        loss = model(**batch, mode='loss')['loss']
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads, sorted(model.state_dict())))
    (eager, eager_grads, eager_keys), (compiled, compiled_grads, compiled_keys) = results
    assert compiled_keys == eager_keys  # checkpoints load either way
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-4)
    assert compiled_grads.keys() == eager_grads.keys()
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
