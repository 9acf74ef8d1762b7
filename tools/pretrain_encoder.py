"""``tools/pretrain.py CONFIG --stage encoder_pretraining``, under its earlier name.

python tools/pretrain_encoder.py CONFIG [--cfg-options key=value ...]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pretrain import main  # noqa: E402

if __name__ == '__main__':
    main([*sys.argv[1:], '--stage', 'encoder_pretraining'])
