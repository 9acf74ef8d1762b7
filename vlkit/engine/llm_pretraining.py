"""LLM pretraining: a stage before VLM training that writes the directory ``language_model.pretrained`` loads.

A config that freezes the language model (or trains it through LoRA) freezes whatever it was built with,
and the default tiny Llama is built from a config dict: random. So this stage first teaches it the synthetic
benchmark's own language: questions and answers drawn from the generator
(:func:`vlkit.data.synthetic.sample_stream`), formatted exactly as the VLM's training samples format them
(:func:`vlkit.data.templates.tokenize_conversation`) but without the ``<image>`` marker, with a next-token
loss over the whole text. The answers are drawn at random given the question, so what the text teaches is
the language: how a question reads and which words answer it (a colour for a colour question), not the
answer itself; the held-out metrics say so: the next-token loss before and after, the share of greedy
answers that are a valid answer for their task (:data:`ANSWERS`), which should approach 100%, and their
accuracy, which should stay near chance.

A config asks for the stage with a top-level ``llm_pretraining`` dict (``iters``, ``batch_size``, ``lr``,
``seed``, ``precision``; ``data_root`` defaults to the config's own, and the tools set ``precision`` to the
run's, vlkit.engine.precision). ``tools/train.py`` runs :func:`ensure_pretrained_llm` before it builds the
model (``tools/pretrain.py`` runs it alone): the stage trains once, writes ``{data_root}/llms/{key}/``
(``save_pretrained``, safetensors) beside ``{key}.json`` (its settings and held-out metrics), and sets
``language_model.pretrained`` to the directory; later runs find it and skip the training. The key covers the
language model's architecture and tokenizer (its vocabulary too), the settings and the benchmark's format,
not the part's ``train`` mode: a frozen and a LoRA config share one result. The stage seeds every generator
with its own ``seed``, so its result does not depend on what ran before it in the process.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.runner import set_random_seed
from torch import Tensor, nn
from tqdm import tqdm

from ..constants import IGNORE_INDEX, IMAGE_TOKEN
from ..data import synthetic
from ..data.prepare import default_data_root
from ..data.templates import format_answer, tokenize_conversation
from ..models.training import TRAINING_KEYS
from ..ops import autocast
from ..registry import LANGUAGE_MODELS
from ..tokenization import build_tokenizer
from . import stages
from .checkpoint import publish_dir, write_text_atomic

CONFIG_KEY = 'llm_pretraining'
DEFAULTS = dict(iters=150, batch_size=64, lr=2e-3, seed=0, precision='fp32')
HELD_OUT_SAMPLES = 600  # 100 per task, drawn with the seed after the stage's own
EVAL_BATCH = 200
# The words that answer each task's question: a greedy answer outside its task's list is not an answer.
ANSWERS = {
    'colour': tuple(synthetic.COLOURS),
    'shape': synthetic.SHAPES,
    'count': synthetic.NUMBERS,
    'spatial': synthetic.SHAPES,
    'position': synthetic.SHAPES,
    'text': synthetic.WORDS,
}
# What the result does not depend on: where weights come from, and how the VLM trains the part afterwards.
NOT_IN_KEY = ('pretrained', *TRAINING_KEYS)


def stage_settings(cfg: Any) -> dict | None:
    """The config's ``llm_pretraining`` settings, defaults and the shared ``data_root`` filled in; ``None``
    when the config has no such stage."""
    shared = {'data_root': cfg.get('data_root') or default_data_root()}
    return stages.stage_settings(cfg, CONFIG_KEY, DEFAULTS, shared)


def pretrained_dir(llm_cfg: dict, settings: dict, tokenizer=None) -> Path:
    """Where the stage writes (and later finds) its result: keyed by the language model's config (its
    tokenizer spec without the ``data_root`` it was read from, and the vocabulary read there), the settings
    and the benchmark's format."""
    if tokenizer is None:
        tokenizer = build_tokenizer(llm_cfg['tokenizer'])
    spec = llm_cfg['tokenizer']
    if isinstance(spec, dict):  # where a tokenizer was read from is no part of it: its vocabulary is
        spec = {k: v for k, v in spec.items() if k != 'data_root'}
    key_settings = {
        'language_model': {**_architecture(llm_cfg), 'tokenizer': spec},
        'vocabulary': sorted(tokenizer.get_vocab().items()),
        **{k: v for k, v in settings.items() if k != 'data_root'},
        'benchmark_format': synthetic.FORMAT_VERSION,
    }
    return Path(settings['data_root']) / 'llms' / stages.cache_key(key_settings)


def ensure_pretrained_llm(cfg: Any) -> Path | None:
    """Runs the config's LLM pretraining stage unless its result exists, and points
    ``model.language_model.pretrained`` at the result. ``None`` (and nothing done) without the stage."""
    settings = stage_settings(cfg)
    if settings is None:
        return None
    llm_cfg = stages.part_config(cfg, CONFIG_KEY)
    if not isinstance(llm_cfg.get('model'), dict):
        raise ValueError(
            f'{CONFIG_KEY} trains a language model built from a config dict (language_model.model='
            f'dict(model_type=...)), but language_model.model is {llm_cfg.get("model")!r}'
        )
    path = pretrained_dir(llm_cfg, settings)
    stages.build_once(path, lambda p: pretrain_llm(llm_cfg, settings, p))
    cfg.model.language_model.pretrained = str(path)
    return path


def pretrain_llm(llm_cfg: dict, settings: dict, path: Path) -> dict[str, dict]:
    """Builds the language model from its config, pretrains it, and writes it to the directory ``path``
    (atomically) with ``path.json`` beside; returns the held-out metrics before and after."""
    set_random_seed(settings['seed'])
    llm = LANGUAGE_MODELS.build({**llm_cfg, 'pretrained': None, 'train': 'full', 'lora': None})
    metrics = _pretrain(llm.model, llm.tokenizer, settings)
    record = {'language_model': _architecture(llm_cfg), **settings, 'held_out': metrics}
    # the record first: a directory that exists always has its record
    write_text_atomic(str(path.with_suffix('.json')), json.dumps(record, indent=2, default=str))
    work = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    shutil.rmtree(work, ignore_errors=True)
    try:
        llm.model.save_pretrained(work)  # safetensors
        publish_dir(str(work), str(path))
    finally:
        shutil.rmtree(work, ignore_errors=True)  # still there only if the write failed
    print_log(f'llm pretraining: wrote {path}', logger='current')
    return metrics


def _architecture(llm_cfg: dict) -> dict:
    return {k: v for k, v in llm_cfg.items() if k not in NOT_IN_KEY}


def _conversation(question: str, answer: str) -> list[dict]:
    """A benchmark sample as the VLM's shards hold it, without the ``<image>`` marker."""
    return [{'from': 'human', 'value': question}, {'from': 'gpt', 'value': answer}]


def _batch(ids: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    # -> input_ids, attention_mask, labels [B, T]: right-padded; every real token is a label
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), pad_id)
    attention_mask = torch.zeros(len(ids), width, dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)], attention_mask[row, : len(seq)] = torch.tensor(seq), 1
    return input_ids, attention_mask, input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)


def _loss(model: nn.Module, batch: tuple[Tensor, ...], precision: str, reduction: str = 'mean') -> Tensor:
    """Next-token cross-entropy over every text token after the first."""
    input_ids, attention_mask, labels = batch
    with autocast('cpu', precision):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX,
        reduction=reduction,
    )  # fmt: skip


@torch.no_grad()
def _greedy_answers(model: nn.Module, tokenizer, questions: list[str], precision: str) -> dict[str, str]:
    """{question: greedy answer} for each distinct question, its prompt as the VLM generates from it."""
    prompts = defaultdict(list)  # prompts of one length go in one batch, unpadded
    for q in sorted(set(questions)):
        ids = tokenize_conversation(tokenizer, _conversation(q, ''), for_generation=True)['input_ids']
        prompts[len(ids)].append((q, ids))
    max_new_tokens = 1 + max(
        len(tokenizer(format_answer(word), add_special_tokens=False)['input_ids'])
        for word in itertools.chain(*ANSWERS.values())
    )
    answers = {}
    for length, group in prompts.items():
        input_ids = torch.tensor([ids for _, ids in group])
        with autocast('cpu', precision):
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                suppress_tokens=[tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)],
            )
        texts = tokenizer.batch_decode(out[:, length:], skip_special_tokens=True)
        answers.update({q: text.strip() for (q, _), text in zip(group, texts, strict=True)})
    return answers


@torch.no_grad()
def held_out_metrics(model: nn.Module, tokenizer, samples: list[tuple], precision: str) -> dict:
    """On ``samples`` of (task, question, answer): the next-token loss per token, the share (%) of greedy
    answers that are a valid answer for their task (overall and per task), and the share that are right."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(samples), EVAL_BATCH):
        ids = [tokenize_conversation(tokenizer, _conversation(q, a))['input_ids'] for _, q, a in
               samples[start : start + EVAL_BATCH]]  # fmt: skip
        batch = _batch(ids, tokenizer.pad_token_id)
        total += _loss(model, batch, precision, reduction='sum').item()
        count += int((batch[2][:, 1:] != IGNORE_INDEX).sum())
    greedy = _greedy_answers(model, tokenizer, [q for _, q, _ in samples], precision)
    valid, right, per_task = Counter(), 0, Counter(task for task, _, _ in samples)
    for task, question, answer in samples:
        valid[task] += greedy[question] in ANSWERS[task]
        right += greedy[question] == answer
    model.train(was_training)
    return {
        'loss': round(total / count, 4),
        'valid_answer': round(100 * sum(valid.values()) / len(samples), 1),
        'valid_answer_per_task': {t: round(100 * valid[t] / n, 1) for t, n in per_task.items()},
        'accuracy': round(100 * right / len(samples), 1),
    }


def _samples(seed: int, n: int) -> list[tuple[str, str, str]]:
    """``n`` (task, question, answer) of the benchmark's pretraining stream ``seed``; no image is rendered."""
    stream = synthetic.sample_stream('pretrain', seed)
    return [(task, question, answer) for _, task, _, question, answer in itertools.islice(stream, n)]


def _pretrain(model: nn.Module, tokenizer, settings: dict) -> dict[str, dict]:
    iters, batch_size, seed, precision = (settings[k] for k in ('iters', 'batch_size', 'seed', 'precision'))
    print_log(
        f'pretraining the language model on the synthetic benchmark text for {iters} iterations '
        '(once; cached afterwards)',
        logger='current',
    )
    held_out = _samples(seed + 1, HELD_OUT_SAMPLES)
    before = held_out_metrics(model, tokenizer, held_out, precision)
    encode = functools.cache(
        lambda q, a: tokenize_conversation(tokenizer, _conversation(q, a))['input_ids']
    )  # a few dozen distinct questions, a few hundred distinct texts
    stream = synthetic.sample_stream('pretrain', seed)
    optim = torch.optim.AdamW(model.parameters(), lr=settings['lr'], weight_decay=0.05)
    sched = stages.warmup_cosine(optim, iters)
    model.train()
    with tqdm(range(iters), desc='llm pretraining') as bar:
        for it in bar:
            ids = [encode(q, a) for _, _, _, q, a in itertools.islice(stream, batch_size)]
            loss = _loss(model, _batch(ids, tokenizer.pad_token_id), precision)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            if it % 20 == 0:
                bar.set_postfix(loss=f'{loss.item():.3f}')
    after = held_out_metrics(model, tokenizer, held_out, precision)
    model.eval()
    print_log(
        f'llm pretraining: held-out next-token loss {before["loss"]:.3f} -> {after["loss"]:.3f}, valid '
        f'answers {before["valid_answer"]}% -> {after["valid_answer"]}% (per task '
        f'{after["valid_answer_per_task"]}), accuracy {after["accuracy"]}% (the answers are drawn at random '
        'given the question: near chance is expected)',
        logger='current',
    )
    return {'before': before, 'after': after}
