"""Make a vlkit config and checkpoint of a published model, to evaluate and compare it in vlkit.

python tools/import_hf.py hf-llava DIR --out OUT

DIR is a transformers LLaVA directory (``LlavaForConditionalGeneration``: config, safetensors weights and
tokenizer, e.g. an llava-hf model or what tools/export.py wrote). OUT receives ``config.py`` (the parts, as
config dicts: nothing is downloaded to build them; the input size and the encoder's preprocessing from the
directory's image processor), ``model.pth`` (a vlkit checkpoint, weights only) and ``tokenizer/``. Put
data, schedule and evaluation beside it:

    _base_ = ['OUT/config.py', 'configs/_base_/default_runtime.py', ...]
    python tools/test.py MY_CONFIG OUT/model.pth

What vlkit cannot express (several feature layers, a projector without biases, ...) is refused by name.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp

os.environ.setdefault('HF_HUB_OFFLINE', '1')

FORMATS = ('hf-llava',)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('format', choices=FORMATS, help='the layout of DIR')
    parser.add_argument('dir', help='the directory to import')
    parser.add_argument('--out', required=True, help='where config.py, model.pth and tokenizer/ go')
    return parser.parse_args(argv)


def import_hf_llava(folder: str, out: str):
    """The vlkit model of the LLaVA in ``folder``, with its config and checkpoint written under ``out``."""
    import torch
    from mmengine.config import Config
    from transformers import AutoTokenizer, LlavaConfig, LlavaForConditionalGeneration

    from vlkit.models.hf_llava import import_blockers, llava_parts, load_from_llava
    from vlkit.registry import MODELS

    config = LlavaConfig.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    blockers = import_blockers(config, tokenizer)
    if blockers:
        raise ValueError(f'vlkit cannot express the LLaVA in {folder}: ' + '; '.join(blockers))
    tokenizer_dir = osp.abspath(osp.join(out, 'tokenizer'))
    tokenizer.save_pretrained(tokenizer_dir)
    processor = image_processor_settings(folder)
    parts = llava_parts(config, tokenizer_dir, processor)
    cfg = Config(dict(default_scope='vlkit', **parts))
    cfg.dump(osp.join(out, 'config.py'))
    if (processor or {}).get('do_pad'):
        print(
            f"{folder}'s processor pads images to a square: give your datasets pad_to_square=True "
            '(docs/data.md) to evaluate it as it was run'
        )
    model = MODELS.build(dict(type='VisionLanguageModel', **parts))
    load_from_llava(model, LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32))
    meta = dict(imported_from=osp.abspath(folder), format='hf-llava')
    torch.save(dict(state_dict=model.state_dict(), meta=meta), osp.join(out, 'model.pth'))
    return model


def image_processor_settings(folder: str) -> dict | None:
    """The settings of the image processor saved in ``folder`` (``None`` where there is none)."""
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(folder).to_dict()
    except OSError:  # no processor files: the tower's own size and vlkit's default preprocessing
        return None


def main(argv=None) -> None:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    try:
        import_hf_llava(args.dir, args.out)
    except ValueError as err:
        raise SystemExit(f'import stopped: {err}') from err
    print(f'wrote {args.out}/config.py, {args.out}/model.pth and {args.out}/tokenizer/')


if __name__ == '__main__':
    main()
