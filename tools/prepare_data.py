"""Convert a public dataset's files into vlkit's shards (docs/data.md).

    python tools/prepare_data.py FORMAT SOURCE [SOURCE ...] --out DIR [--images ROOT] [--workers N]
        [--shard-size N] [--max-samples N] [--resize SIDE] [--strict] [--option key=value ...]

FORMAT is a registered data format (``vlkit.data.formats``: llava, coco_captions, karpathy, vqa, textvqa,
gqa, vizwiz, obelics, mmc4, or your own); ``--option`` passes its options (``--option splits=test`` for
karpathy). Killed and run again with the same arguments, it keeps the shards already complete and redoes
the rest, giving the same shards as an uninterrupted run. Bad records are skipped and counted by reason in
``DIR/manifest.json`` and ``DIR/data_skips.json``; ``--strict`` stops at the first one, naming it.
img2dataset's shards need no conversion: read them with ``dict(type='Img2DatasetShards', shards=FOLDER)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault('HF_HUB_OFFLINE', '1')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('format', help='a registered data format (llava, coco_captions, vqa, ...)')
    parser.add_argument('sources', nargs='+', help="the format's source files")
    parser.add_argument('--out', required=True, help='the folder the shards and the manifest go to')
    parser.add_argument('--images', help='the folder that image paths in the sources are relative to')
    parser.add_argument('--workers', type=int, default=1, help='processes writing shards (default 1)')
    parser.add_argument('--shard-size', type=int, default=1000, help='records per shard (default 1000)')
    parser.add_argument('--max-samples', type=int, help='convert only the first N records')
    parser.add_argument(
        '--resize', type=int, help='downscale images to this shorter side (default: copy bytes)'
    )
    parser.add_argument('--strict', action='store_true', help='stop at the first bad record, naming it')
    parser.add_argument('--option', nargs='+', default=[], metavar='KEY=VALUE', help="the format's options")
    return parser.parse_args(argv)


def format_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep:
            raise SystemExit(f'--option {pair!r}: expected key=value')
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def main(argv=None) -> dict:
    args = parse_args(argv)
    from tqdm import tqdm

    from vlkit.data.conversion import ConversionError, Options, convert
    from vlkit.registry import DATA_FORMATS

    if args.format == 'img2dataset':
        raise SystemExit(
            'img2dataset shards need no conversion: read them with '
            "dict(type='Img2DatasetShards', shards=FOLDER)"
        )
    options = format_options(args.option)
    try:
        fmt = DATA_FORMATS.build(dict(type=args.format, **options))
    except (KeyError, TypeError, ValueError) as err:
        raise SystemExit(f'format {args.format!r}: {err}') from err
    if args.shard_size < 1 or args.workers < 1:
        raise SystemExit('--shard-size and --workers must be at least 1')
    description = {'format': args.format, 'format_options': options}
    with tqdm(desc=f'{args.format} -> {args.out}', unit=' records', file=sys.stderr, mininterval=1.0) as bar:
        try:
            manifest = convert(
                fmt,
                args.sources,
                args.out,
                Options(images=args.images, resize=args.resize, strict=args.strict),
                shard_size=args.shard_size,
                workers=args.workers,
                max_records=args.max_samples,
                progress=bar,
                description=description,
            )
        except (ConversionError, FileNotFoundError, ValueError) as err:
            raise SystemExit(f'prepare_data: {err}') from err
    skipped = ', '.join(f'{k} {v}' for k, v in manifest['skipped'].items()) or 'none'
    splits = ', '.join(f'{k} {v["num_samples"]}' for k, v in manifest['splits'].items())
    print(
        f'{manifest["num_samples"]} samples of {manifest["num_records"]} records in {args.out} ({splits}); '
        f'skipped: {skipped}; {manifest["seconds"]} s'
    )
    return manifest


if __name__ == '__main__':
    main()
