"""vlkit's registries: a child of every MMEngine root registry (scope ``vlkit``), plus the model parts.

Configs set ``default_scope = 'vlkit'``. Each registry imports its ``locations`` on first lookup, so a
config never needs to import vlkit modules itself. Built-in connectors live in the top-level ``connectors/``
folder, installed as ``vlkit.connectors``, and register exactly as a user's plug-in does.
"""

from __future__ import annotations

import difflib
from typing import Any

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import INFERENCERS as MMENGINE_INFERENCERS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNER_CONSTRUCTORS as MMENGINE_RUNNER_CONSTRUCTORS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import STRATEGIES as MMENGINE_STRATEGIES
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

_ENGINE = ['vlkit.engine']

RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS, locations=_ENGINE)
RUNNER_CONSTRUCTORS = Registry('runner constructor', parent=MMENGINE_RUNNER_CONSTRUCTORS, locations=_ENGINE)
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, locations=_ENGINE)
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, locations=_ENGINE)
STRATEGIES = Registry('strategy', parent=MMENGINE_STRATEGIES, locations=_ENGINE)
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, locations=['vlkit.data'])
DATA_SAMPLERS = Registry('data sampler', parent=MMENGINE_DATA_SAMPLERS, locations=['vlkit.data'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, locations=['vlkit.data'])
MODELS = Registry('model', parent=MMENGINE_MODELS, locations=['vlkit.models'])
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, locations=_ENGINE)
WEIGHT_INITIALIZERS = Registry(
    'weight initializer', parent=MMENGINE_WEIGHT_INITIALIZERS, locations=['vlkit.models']
)
OPTIMIZERS = Registry('optimizer', parent=MMENGINE_OPTIMIZERS, locations=_ENGINE)
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, locations=_ENGINE)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, locations=_ENGINE
)
PARAM_SCHEDULERS = Registry('parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS, locations=_ENGINE)
METRICS = Registry('metric', parent=MMENGINE_METRICS, locations=['vlkit.evaluation'])
EVALUATOR = Registry('evaluator', parent=MMENGINE_EVALUATOR, locations=['vlkit.evaluation'])
TASK_UTILS = Registry('task util', parent=MMENGINE_TASK_UTILS, locations=['vlkit.models'])
VISUALIZERS = Registry('visualizer', parent=MMENGINE_VISUALIZERS, locations=_ENGINE)
VISBACKENDS = Registry('vis_backend', parent=MMENGINE_VISBACKENDS, locations=_ENGINE)
LOG_PROCESSORS = Registry('log_processor', parent=MMENGINE_LOG_PROCESSORS, locations=_ENGINE)
INFERENCERS = Registry('inferencer', parent=MMENGINE_INFERENCERS, locations=['vlkit.models'])
FUNCTIONS = Registry('function', parent=MMENGINE_FUNCTIONS, locations=['vlkit.tokenization', 'vlkit.data'])


def component_class(registry: Registry, obj_type: Any) -> Any:
    """What a config's ``type`` names in ``registry``: the registered class (or function) for a name, the
    object itself otherwise; ``None`` for a name nothing registered."""
    return registry.get(obj_type) if isinstance(obj_type, str) else obj_type


def build_component(cfg: dict, registry: Registry, default_args: dict | None = None) -> Any:
    """Builds ``cfg`` from ``registry`` itself, naming the registered types when ``type`` is unknown.

    The model-part registries below are children of ``MODELS`` with scopes of their own; MMEngine's
    default builder would switch to the ``vlkit`` scope and look in ``MODELS``, where they are not.
    """
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'a {registry.name} config must be a dict with a "type" key, got {cfg!r}')
    args = dict(default_args or {})
    args.update({k: v for k, v in cfg.items() if k != 'type'})
    obj_type = cfg['type']
    obj_cls = component_class(registry, obj_type)
    if obj_cls is None:
        names = sorted(registry.module_dict)
        close = difflib.get_close_matches(str(obj_type), names, n=1)
        hint = f' Did you mean {close[0]!r}?' if close else ''
        raise KeyError(f'{obj_type!r} is not a registered {registry.name}; registered: {names}.{hint}')
    try:
        return obj_cls(**args)
    except TypeError as err:
        raise TypeError(f'building {registry.name} {obj_cls.__name__}: {err}') from err


CONNECTORS = Registry(
    'connector',
    parent=MODELS,
    scope='vlkit_connector',
    build_func=build_component,
    locations=['vlkit.connectors'],
)
FUSIONS = Registry(
    'fusion',
    parent=MODELS,
    scope='vlkit_fusion',
    build_func=build_component,
    locations=['vlkit.models.fusion'],
)
VISION_ENCODERS = Registry(
    'vision encoder',
    parent=MODELS,
    scope='vlkit_vision_encoder',
    build_func=build_component,
    locations=['vlkit.models.encoders'],
)
LANGUAGE_MODELS = Registry(
    'language model',
    parent=MODELS,
    scope='vlkit_language_model',
    build_func=build_component,
    locations=['vlkit.models.llms'],
)
# Source formats that tools/prepare_data.py converts into shards (one file per format in vlkit/data/formats/)
DATA_FORMATS = Registry(
    'data format',
    scope='vlkit_data_format',
    build_func=build_component,
    locations=['vlkit.data.formats'],
)


def shared_settings(*names: str):
    """Declares which experiment-wide settings a registered class or function takes as arguments.

    ``data_root`` and ``image_size`` are top-level config keys; ``tokenizer`` is the language model's
    tokenizer spec; ``image_processor`` is the preprocessing the vision encoder declares
    (``VisionEncoder.declared_preprocessing``). :func:`vlkit.config.load_config` fills each declared
    argument that a component's config leaves ``None`` (and no other), so a config states each of them
    once::

        @DATASETS.register_module()
        @shared_settings('image_size', 'tokenizer')
        class MyShards(IterableDataset): ...
    """

    def declare(obj):
        obj.shared_settings = tuple(names)
        return obj

    return declare
