"""Run a config's LLM pretraining stage alone (tools/train.py runs it too, before it builds the model).

    python tools/pretrain_llm.py CONFIG [--cfg-options key=value ...]

Writes ``{data_root}/llms/{key}/`` (the language model, ``save_pretrained``, which
``language_model.pretrained`` loads) and ``{key}.json`` (settings and held-out metrics) unless they exist,
and prints the path.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')


def main(argv=None) -> None:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('config')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: key=value')
    args = parser.parse_args(argv)

    from vlkit.config import load_config
    from vlkit.engine import ensure_pretrained_llm

    cfg = load_config(args.config, args.cfg_options)
    path = ensure_pretrained_llm(cfg)
    if path is None:
        raise SystemExit(f'{args.config} has no llm_pretraining stage')
    print(f'language model: {path}')


if __name__ == '__main__':
    main()
