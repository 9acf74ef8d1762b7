"""Generate the synthetic benchmark (shards, manifest, tokenizer) ahead of training.

    python tools/make_synthetic.py [--data-root data/synthetic] [--train 20000 --val 1000 --test 1000]
        [--image-size 64] [--shard-size 1000]

Training generates it on first use too; this tool is for generating it elsewhere or at another size.
"""

from __future__ import annotations

import argparse
import json

from vlkit.data.prepare import DEFAULT_SPLITS, default_data_root, ensure_synthetic_data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        '--data-root', default=default_data_root(), help='output directory (env VLKIT_DATA_ROOT)'
    )
    for split, n in DEFAULT_SPLITS.items():
        parser.add_argument(
            f'--{split}', type=int, default=n, help=f'samples in the {split} split (default {n})'
        )
    parser.add_argument('--image-size', type=int, default=64)
    parser.add_argument('--shard-size', type=int, default=1000)
    args = parser.parse_args(argv)
    splits = {split: getattr(args, split) for split in DEFAULT_SPLITS}
    for split, n in splits.items():
        if n < 1:
            parser.error(f'--{split} must be at least 1, got {n}')
    root = ensure_synthetic_data(args.data_root, splits, args.image_size, args.shard_size)
    manifest = json.loads((root / 'manifest.json').read_text())
    print(f'synthetic benchmark in {root}:')
    for split, info in manifest['splits'].items():
        prior = info.get('question_only_prior', {}).get('overall')
        extra = f', question-only prior {prior:.1f}%' if prior is not None else ''
        print(f'  {split}: {info["num_samples"]} samples in {len(info["shards"])} shards{extra}')


if __name__ == '__main__':
    main()
