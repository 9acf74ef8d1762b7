"""How learnable each synthetic task is from the frozen encoder's tokens, with no connector and no LLM.

    python benchmarks/task_probe.py [CONFIG] [--tasks colour shape count spatial text] [--samples N]
        [--held-out 1000] [--passes 1] [--seed 0] [--no-save] [--cfg-options KEY=VALUE ...]

For each task, scenes and questions are drawn as the benchmark draws them (:func:`vlkit.data.synthetic.
make_question`: the answer first, then a scene that fits it), rendered at the config's image size and
encoded once by the config's vision encoder, frozen, with its pretrained weights (the encoder-pretraining
stage runs first if its result is missing, as in ``tools/train.py``). A small probe, a 2-layer transformer
(width 128) over ``[CLS, the question's tokens (the config's tokenizer), the visual tokens]``, is trained on
``--samples`` of them for ``--passes`` passes (batches of 64) and scored on ``--held-out`` others, three
ways:

* **question only**: no visual token (what the question alone gives: the prior, near chance by design);
* **mean token**: the visual tokens averaged into one (what survives a pooling that keeps no position);
* **all tokens**: every visual token with a learned position (what a connector that keeps them could pass on).

``--samples`` defaults to each task's share of the config's training run (``max_iters`` x batch size / the
number of tasks): the examples of the task the VLM sees. A task that the *all tokens* probe learns but the
VLM does not is held back by the connector or the language model, not by the encoder. The table is appended
to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch
from mmengine.config import DictAction
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for benchmarks.connectors, run as a script

from benchmarks.connectors import publish  # noqa: E402

DEFAULT_CONFIG = str(ROOT / 'configs' / 'blip3_perceiver.py')
VIEWS = ('question only', 'mean token', 'all tokens')
BATCH, WIDTH = 64, 128
MAX_QUESTION_TOKENS = 64


def frozen_encoder(cfg):
    """The config's vision encoder with its pretrained weights, in eval mode."""
    from vlkit.engine import ensure_pretrained_encoder
    from vlkit.registry import VISION_ENCODERS, build_component

    ensure_pretrained_encoder(cfg)
    return build_component(cfg.model.vision_encoder.to_dict(), VISION_ENCODERS).eval()


def draw(task: str, n: int, seed: int, image_size: int, encoder, tokenizer) -> dict:
    """``n`` questions of ``task``: visual tokens [n, N, D], question ids [n, L] (0-padded) and answers."""
    from vlkit.data import synthetic
    from vlkit.data.transforms import normalize_uint8

    rng = random.Random(seed)
    images, questions, answers = [], [], []
    for _ in range(n):
        scene, question, answer = synthetic.make_question(rng, task)
        images.append(np.asarray(synthetic.render(scene, image_size)[0]))
        questions.append(tokenizer(question, add_special_tokens=False)['input_ids'])
        answers.append(answer)
    pixels = torch.as_tensor(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        tokens = torch.cat([encoder(normalize_uint8(pixels[i : i + 256])).tokens for i in range(0, n, 256)])
    width = max(map(len, questions))
    if width > MAX_QUESTION_TOKENS:
        raise ValueError(f'a {task} question has {width} tokens; at most {MAX_QUESTION_TOKENS} fit')
    ids = torch.zeros(n, width, dtype=torch.long)
    for row, q in zip(ids, questions, strict=True):
        row[: len(q)] = torch.tensor(q)
    return {'tokens': tokens, 'ids': ids, 'answers': answers}


class Probe(nn.Module):
    """A 2-layer transformer over [CLS, question tokens, visual tokens (as ``view`` keeps them)], each
    question token and each kept visual token with a learned position ("which is further left , the A or the
    B ?" needs the order of its words)."""

    def __init__(self, vocab_size: int, visual_dim: int, num_visual: int, num_answers: int, view: str):
        super().__init__()
        self.view = view
        self.words = nn.Embedding(vocab_size, WIDTH, padding_idx=0)
        self.word_position = nn.Parameter(torch.randn(MAX_QUESTION_TOKENS, WIDTH) * 0.02)
        self.cls = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.visual = nn.Linear(visual_dim, WIDTH)
        self.position = nn.Parameter(torch.randn(num_visual, WIDTH) * 0.02)
        layer = nn.TransformerEncoderLayer(WIDTH, 4, 2 * WIDTH, dropout=0.0, batch_first=True)
        self.body = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, num_answers)

    def forward(self, tokens: Tensor, ids: Tensor) -> Tensor:
        words = self.words(ids) + self.word_position[: ids.shape[1]]
        parts = [self.cls.expand(len(ids), -1, -1), words]
        padding = [torch.zeros(len(ids), 1, dtype=torch.bool), ids == 0]
        if self.view != 'question only':
            visual = self.visual(tokens.mean(1, keepdim=True) if self.view == 'mean token' else tokens)
            parts.append(visual if self.view == 'mean token' else visual + self.position)
            padding.append(torch.zeros(len(ids), visual.shape[1], dtype=torch.bool))
        out = self.body(torch.cat(parts, 1), src_key_padding_mask=torch.cat(padding, 1))
        return self.head(out[:, 0])


def probe_accuracy(train: dict, held_out: dict, vocab_size: int, view: str, passes: int, seed: int) -> float:
    """Held-out accuracy (%) of a probe of ``view`` trained on ``train``."""
    answers = sorted(set(train['answers']) | set(held_out['answers']))
    labels = {name: torch.tensor([answers.index(a) for a in d['answers']]) for name, d in
              (('train', train), ('held_out', held_out))}  # fmt: skip
    torch.manual_seed(seed)
    probe = Probe(vocab_size, train['tokens'].shape[-1], train['tokens'].shape[1], len(answers), view)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-3)
    for _ in range(passes):
        for batch in torch.randperm(len(labels['train'])).split(BATCH):
            logits = probe(train['tokens'][batch], train['ids'][batch])
            loss = nn.functional.cross_entropy(logits, labels['train'][batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        predicted = probe(held_out['tokens'], held_out['ids']).argmax(-1)
    return 100.0 * (predicted == labels['held_out']).float().mean().item()


def run(args: argparse.Namespace) -> list[dict]:
    from vlkit.config import load_config
    from vlkit.data import synthetic
    from vlkit.tokenization import build_tokenizer

    cfg = load_config(args.config, args.cfg_options)
    run_samples = cfg.train_cfg.max_iters * cfg.train_dataloader.batch_size
    samples = args.samples or run_samples // len(synthetic.TASKS)
    encoder = frozen_encoder(cfg)
    tokenizer = build_tokenizer(cfg.model.language_model.tokenizer)
    rows = []
    for i, task in enumerate(args.tasks):
        seed = args.seed + 1000 * i
        train = draw(task, samples, seed, cfg.image_size, encoder, tokenizer)
        held_out = draw(task, args.held_out, seed + 500, cfg.image_size, encoder, tokenizer)
        row = {
            'task': task,
            'samples': samples,
            'chance': 100 * synthetic.CHANCE[task],
        }
        for view in VIEWS:
            row[view] = probe_accuracy(train, held_out, len(tokenizer), view, args.passes, args.seed)
        print(row, file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    head = ['task', 'training samples', 'chance %', *(f'{v} %' for v in VIEWS)]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        cells = [r['task'], str(r['samples']), f'{r["chance"]:.1f}', *(f'{r[v]:.1f}' for v in VIEWS)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    from vlkit.data.synthetic import TASKS

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('config', nargs='?', default=DEFAULT_CONFIG)
    parser.add_argument('--tasks', nargs='+', default=list(TASKS), choices=TASKS)
    parser.add_argument('--samples', type=int, default=None, help="training questions per task (default: "
                        "each task's share of the config's training run)")  # fmt: skip
    parser.add_argument('--held-out', type=int, default=1000, help='held-out questions per task (1000)')
    parser.add_argument('--passes', type=int, default=1, help='passes over the training questions (1)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-save', action='store_true', help='print only; do not append to RESULTS.md')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={}, help='config overrides')
    args = parser.parse_args(argv)
    rows = run(args)
    date = datetime.datetime.now().isoformat(timespec='minutes')
    head = (f'{date}: {os.cpu_count()} cores, torch {torch.__version__}; benchmarks/task_probe.py '
            f'{Path(args.config).name} (frozen encoder; probes trained {args.passes} pass(es); held-out '
            f'accuracy on {args.held_out} questions per task; seed {args.seed})')  # fmt: skip
    publish(f'{head}\n\n{table(rows)}', save=not args.no_save)
    return rows


if __name__ == '__main__':
    main()
