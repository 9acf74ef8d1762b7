"""Export a trained model in a format others read (docs/export.md).

python tools/export.py CONFIG CHECKPOINT --to hf-llava OUT   # model + processor for transformers' LLaVA
python tools/export.py CONFIG CHECKPOINT --to connector OUT  # the connector alone: what a stage 2 loads

``hf-llava`` writes a directory that ``transformers.LlavaForConditionalGeneration.from_pretrained(OUT)`` and
``AutoProcessor.from_pretrained(OUT)`` load (safetensors weights), and so lmms-eval and the rest of the
ecosystem; LoRA adapters are merged first. A model HF LLaVA cannot express is refused with every reason
(vlkit.models.hf_llava). ``connector`` writes ``connector.safetensors`` and ``config.json`` (the connector's
config with its dimensions), which ``load_parts = dict(connector=OUT)`` loads.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

FORMATS = ('hf-llava', 'connector')


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('config', help='the experiment config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='a vlkit checkpoint (iter_N.pth)')
    parser.add_argument('--to', choices=FORMATS, required=True, help='what to write')
    parser.add_argument('out', help='the directory to write')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: key=value')
    return parser.parse_args(argv)


def export_hf_llava(cfg, model, out: str) -> None:
    from vlkit.data.chat import jinja_template
    from vlkit.inference import image_preprocessing, prompt_template, training_datasets, training_template
    from vlkit.models.hf_llava import llava_processor, to_llava, write_legacy_layout
    from vlkit.models.training import merge_lora

    for part in ('vision_encoder', 'connector', 'language_model'):
        merge_lora(getattr(model, part))
    llava = to_llava(model, training_datasets(cfg))
    llava.save_pretrained(out)
    tokenizer = model.language_model.tokenizer
    template = jinja_template(prompt_template(tokenizer, None, training_template(cfg)), tokenizer)
    llava_processor(model, image_preprocessing(cfg), template).save_pretrained(out)
    write_legacy_layout(out, llava.config.vision_config.model_type)


def export_connector(cfg, model, out: str, source: dict) -> None:
    from vlkit.engine.checkpoint import save_part
    from vlkit.models.training import merge_lora

    connector = merge_lora(model.connector)
    config = {k: v for k, v in cfg.model.connector.to_dict().items() if k not in ('train', 'lora')}
    config.update(in_dim=connector.in_dim, out_dim=connector.out_dim)
    if connector.wants_input_grid():
        config['input_grid'] = list(model.vision_encoder.grid_size(model.image_size))
    parts = {p: cfg.model[p].to_dict() for p in ('vision_encoder', 'language_model')}
    save_part(
        connector, 'connector', out, dict(config=config, image_size=model.image_size, **parts, source=source)
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    from vlkit.config import load_config
    from vlkit.engine import CheckpointLoadError
    from vlkit.inference import load_model

    cfg = load_config(args.config, args.cfg_options)
    try:
        model = load_model(cfg, args.checkpoint)
    except CheckpointLoadError as err:
        raise SystemExit(f'export stopped: {err}') from err
    try:
        if args.to == 'hf-llava':
            export_hf_llava(cfg, model, args.out)
        else:
            export_connector(cfg, model, args.out, dict(config=args.config, checkpoint=args.checkpoint))
    except ValueError as err:
        cannot = str(err).startswith('HF LLaVA cannot express')
        hint = '. `--to connector` exports the connector alone (docs/export.md)' if cannot else ''
        raise SystemExit(f'export stopped: {args.config}: {err}{hint}') from err
    print(f'wrote {args.out} ({args.to})')


if __name__ == '__main__':
    main()
