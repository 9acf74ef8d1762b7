"""Print an experiment config as vlkit assembles it (bases merged, model built from its parts).

python tools/print_config.py CONFIG [--cfg-options key=value ...]
"""

from __future__ import annotations

import argparse

from mmengine.config import DictAction

from vlkit.config import load_config


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('config')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: key=value')
    args = parser.parse_args(argv)
    print(load_config(args.config, args.cfg_options).pretty_text)


if __name__ == '__main__':
    main()
