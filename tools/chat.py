"""Ask a trained model one question about one image, to see what it does before and after a stage.

python tools/chat.py CONFIG CHECKPOINT --image FILE --prompt TEXT [--template vlkit|chat|plain|vicuna_v1]
    [--max-new-tokens N] [--save NAME]

The prompt is written as the model's training data wrote it: the ``template`` every training dataset of
the config uses (vlkit's prompt format, the tokenizer's ``chat`` template, LLaVA's ``plain`` or
``vicuna_v1``; docs/data.md), and the image preprocessed as they did; ``--template`` names another. Where
the training datasets differ, the tokenizer's chat template when it has one, else vlkit's format.
``--save NAME`` keeps the question and the answer in ``docs/results/NAME.json`` and renders every
``<!-- results:NAME -->`` block of the docs from it (docs/training.md shows them), so the answer the docs
show is the one this command gave. The Python API is :mod:`vlkit.inference` (``load_model``, ``ask``).
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
import time

os.environ.setdefault('HF_HUB_OFFLINE', '1')

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import results  # noqa: E402 - tools/results.py renders the docs' results blocks

RESULTS = results.RESULTS


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('config', help='the experiment config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='a vlkit checkpoint (iter_N.pth)')
    parser.add_argument('--image', required=True, help='an image file')
    parser.add_argument('--prompt', required=True, help='the question or instruction')
    parser.add_argument(
        '--template',
        choices=['vlkit', 'chat', 'plain', 'vicuna_v1'],
        help="default: the training datasets' template",
    )
    parser.add_argument('--max-new-tokens', type=int, default=48)
    parser.add_argument(
        '--save', metavar='NAME', help='keep the answer in docs/results/NAME.json for the docs'
    )
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: key=value')
    return parser.parse_args(argv)


def save(name: str, args: argparse.Namespace, model, answer: str) -> None:
    from vlkit.inference import prompt_template

    record = {
        'config': args.config,
        'checkpoint': args.checkpoint,
        'image': osp.basename(args.image),
        'prompt': args.prompt,
        'template': prompt_template(model.tokenizer, args.template, getattr(model, 'template', None)),
        'max_new_tokens': args.max_new_tokens,
        'answer': answer,
        'date': time.strftime('%Y-%m-%d'),
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(osp.join(RESULTS, f'{name}.json'), 'w') as f:
        json.dump(record, f, indent=1)
        f.write('\n')
    results.render()  # every docs block of that name, as tools/results.py renders them


def main(argv=None) -> None:
    args = parse_args(argv)
    from vlkit.engine import CheckpointLoadError
    from vlkit.inference import ask, load_model

    try:
        model = load_model(args.config, args.checkpoint, args.cfg_options)
    except CheckpointLoadError as err:
        raise SystemExit(f'chat stopped: {err}') from err
    answer = ask(model, args.image, args.prompt, max_new_tokens=args.max_new_tokens, template=args.template)
    print(answer)
    if args.save:
        save(args.save, args, model, answer)


if __name__ == '__main__':
    main()
