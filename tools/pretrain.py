"""Run a config's pretraining stages alone (tools/train.py runs them too, before it builds the model).

    python tools/pretrain.py CONFIG [--stage STAGE] [--cfg-options key=value ...]

Each stage the config has (or only ``--stage``) writes its result unless it exists, and the path is printed:
``encoder_pretraining`` writes ``{data_root}/encoders/{key}.pth`` (the encoder's weights, which
``vision_encoder.checkpoint`` loads) and its ``.json`` (settings and held-out accuracy per target);
``llm_pretraining`` writes ``{data_root}/llms/{key}/`` (the language model, ``save_pretrained``, which
``language_model.pretrained`` loads) and ``{key}.json`` (settings and held-out metrics). docs/architecture.md,
"Stages".
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')


def main(argv=None) -> None:
    from mmengine.config import DictAction

    from vlkit.engine import PRETRAINING_STAGES

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('config')
    parser.add_argument('--stage', choices=PRETRAINING_STAGES, help='only this stage (default: every one)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: key=value')
    args = parser.parse_args(argv)

    from vlkit.config import load_config
    from vlkit.engine import PRETRAINING, PrecisionError, apply_precision

    cfg = load_config(args.config, args.cfg_options)
    try:
        apply_precision(cfg)  # as tools/train.py does: the same precision, so the same cache key
    except PrecisionError as err:
        raise SystemExit(f'config error: {args.config}: {err}') from err
    stages = [s for s in PRETRAINING_STAGES if cfg.get(s) and args.stage in (None, s)]
    if not stages:
        raise SystemExit(f'{args.config} has no {args.stage or " or ".join(PRETRAINING_STAGES)} stage')
    for stage in stages:
        print(f'{stage}: {PRETRAINING[stage](cfg)}')


if __name__ == '__main__':
    main()
