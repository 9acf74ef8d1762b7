"""Checks an assembled experiment config before anything is built, so mistakes cost seconds, not a run.

:func:`check_config` refuses, with the key and the config file named:

* a ``type`` no registry knows (listing the registered names and the closest match);
* a top-level key neither MMEngine's Runner nor vlkit reads (private ``_name`` keys are allowed);
* a keyword argument the constructor of a model part, the model or a dataset does not take (besides a
  part's ``train`` and ``lora``, which the model builder reads; a ``train`` mode that does not exist);
* declared dimensions that disagree: a connector's ``in_dim``/``out_dim`` against the encoder's width and
  the LLM's hidden size (``out_dim`` only for a fusion that splices visual tokens into the LLM's input),
  the encoder's input size against ``image_size``. Each part's class says what its config declares
  (``declared_width``, ``declared_hidden_size``, ``declared_input_size``, ``splices_visual_tokens``);
* dataset shards of which none exists, and local weight or checkpoint paths that do not exist (a part's
  ``file_arguments``, any other argument that looks like a local path, ``load_from`` and ``load_parts``);
  ``packaged_weights`` that vlkit does not know;
* two sources of one part's weights: ``encoder_pretraining`` beside ``vision_encoder.checkpoint``,
  ``llm_pretraining`` beside ``language_model.pretrained``;
* a checkpoint interval that is not a multiple of ``optim_wrapper.accumulative_counts``: a checkpoint inside
  an accumulated step would lose the gradients accumulated so far, and a run resumed from it would differ.
"""

from __future__ import annotations

import difflib
import glob
import inspect
import os.path as osp
from collections.abc import Iterator
from typing import Any

import braceexpand
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import Registry

from . import registry as R
from .engine.stages import PRETRAINING_STAGES, second_weights_source
from .models.training import TRAINING_KEYS, check_training

RUNNER_KEYS = {
    'model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader', 'train_cfg', 'val_cfg',
    'test_cfg', 'auto_scale_lr', 'optim_wrapper', 'param_scheduler', 'val_evaluator', 'test_evaluator',
    'default_hooks', 'custom_hooks', 'data_preprocessor', 'load_from', 'resume', 'launcher', 'env_cfg',
    'log_processor', 'log_level', 'visualizer', 'default_scope', 'randomness', 'experiment_name',
    'model_wrapper_cfg', 'runner_type', 'custom_imports', 'strategy', 'compile', 'cfg',
}  # fmt: skip
VLKIT_KEYS = {
    'vision_encoder',
    'connector',
    'language_model',
    'fusion',
    'model_settings',
    'data_root',
    'image_size',
    *PRETRAINING_STAGES,
    'load_parts',
    'precision',
    'packaged_weights',
    'few_shot_demonstrations',  # tools/test.py --shots draws from it instead of the train dataset
}
PART_REGISTRIES = {
    'vision_encoder': R.VISION_ENCODERS,
    'connector': R.CONNECTORS,
    'language_model': R.LANGUAGE_MODELS,
    'fusion': R.FUSIONS,
}


class ConfigError(ValueError):
    """A config that would fail (or silently do the wrong thing) once training starts."""


def _closest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f' Did you mean {close[0]!r}?' if close else ''


def _registered(registry: Registry) -> list[str]:
    """The names a registry resolves: its own and, for children of MMEngine's roots, MMEngine's built-ins
    (the model-part registries' parent is vlkit's ``MODELS``, whose models are not connectors)."""
    registry.import_from_location()
    names = set(registry.module_dict)
    if registry.parent is not None and registry.parent.scope == 'mmengine':
        registry.parent.import_from_location()
        names |= set(registry.parent.module_dict)
    return sorted(names)


def _components(cfg: Config) -> Iterator[tuple[str, Any, Registry]]:
    """``(key, config dict, registry)`` for every component the Runner or the model builder will build."""
    for part, registry in PART_REGISTRIES.items():
        yield f'model.{part}', cfg.model.get(part), registry
    yield 'model', cfg.model, R.MODELS
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader') or {}
        yield f'{split}_dataloader.dataset', loader.get('dataset'), R.DATASETS
        yield f'{split}_dataloader.collate_fn', loader.get('collate_fn'), R.FUNCTIONS
        yield f'{split}_cfg', cfg.get(f'{split}_cfg'), R.LOOPS
    yield 'few_shot_demonstrations', cfg.get('few_shot_demonstrations'), R.DATASETS
    for name, hook in (cfg.get('default_hooks') or {}).items():
        yield f'default_hooks.{name}', hook, R.HOOKS
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        yield f'custom_hooks[{i}]', hook, R.HOOKS
    wrapper = cfg.get('optim_wrapper') or {}
    yield 'optim_wrapper', wrapper, R.OPTIM_WRAPPERS
    yield 'optim_wrapper.optimizer', wrapper.get('optimizer'), R.OPTIMIZERS
    for i, scheduler in enumerate(cfg.get('param_scheduler') or []):
        yield f'param_scheduler[{i}]', scheduler, R.PARAM_SCHEDULERS
    for split in ('val', 'test'):
        yield f'{split}_evaluator', cfg.get(f'{split}_evaluator'), R.METRICS


def _resolve(key: str, node: Any, registry: Registry, where: str) -> type | None:
    """The class ``node['type']`` names, or a :class:`ConfigError` naming the registered types."""
    if not isinstance(node, dict) or 'type' not in node:
        return None
    obj_type = node['type']
    if not isinstance(obj_type, str):
        return obj_type if inspect.isclass(obj_type) else None
    found = registry.get(obj_type)
    if found is None:
        names = _registered(registry)
        raise ConfigError(
            f'{where}: {key}.type={obj_type!r} is not a registered {registry.name}; '
            f'registered: {names}.{_closest(obj_type, names)}'
        )
    return found if inspect.isclass(found) else None


def _accepted_args(cls: type) -> set[str] | None:
    """The keyword arguments ``cls(...)`` takes, following ``**kwargs`` up the bases; ``None``: anything."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if '__init__' not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names - {'self'}
    return None


def _check_training(key: str, node: dict, where: str) -> set[str]:
    """A model part's ``train``/``lora`` (read by the model builder); returns the keys it accounts for."""
    part = key.removeprefix('model.')
    if part not in ('vision_encoder', 'connector', 'language_model'):
        return set()
    try:
        check_training(part, node.get('train', 'full'), node.get('lora'))
    except ValueError as err:
        raise ConfigError(f'{where}: {err}') from err
    return set(TRAINING_KEYS)


def _check_arguments(key: str, node: dict, cls: type, where: str) -> None:
    accepted = _accepted_args(cls)
    if accepted is None:
        return
    accepted = accepted | _check_training(key, node, where)
    for arg in node:
        if arg != 'type' and arg not in accepted:
            raise ConfigError(
                f'{where}: {key}.{arg} is not an argument of {cls.__name__}; it takes '
                f'{sorted(accepted)}.{_closest(arg, sorted(accepted))}'
            )


def _part_class(model: dict, part: str) -> tuple[dict, type | None]:
    node = model.get(part) or {}
    cls = R.component_class(PART_REGISTRIES[part], node.get('type'))
    return node, cls if inspect.isclass(cls) else None


def _fact(cls: type | None, name: str, node: dict) -> Any:
    method = getattr(cls, name, None)
    return method(node) if method is not None else None


def _check_dimensions(model: dict, image_size: int | None, where: str) -> None:
    """Compares the widths and sizes a config declares in more than one place (each part's class says
    what its config declares)."""
    encoder, encoder_cls = _part_class(model, 'vision_encoder')
    llm, llm_cls = _part_class(model, 'language_model')
    connector, _ = _part_class(model, 'connector')
    _, fusion_cls = _part_class(model, 'fusion')
    width = _fact(encoder_cls, 'declared_width', encoder)
    size = _fact(encoder_cls, 'declared_input_size', encoder)
    name = encoder_cls.__name__ if encoder_cls else 'the vision encoder'
    checks = [
        (connector.get('in_dim'), width,
         f'connector.in_dim={connector.get("in_dim")} does not match the vision encoder width ({width})'),
        (size, image_size, f'vision_encoder ({name}) takes {size} px images, but image_size={image_size}'),
    ]  # fmt: skip
    if getattr(fusion_cls, 'splices_visual_tokens', False):  # visual tokens become LLM input positions
        hidden = _fact(llm_cls, 'declared_hidden_size', llm)
        out_dim = connector.get('out_dim')
        checks.append(
            (out_dim, hidden, f'connector.out_dim={out_dim} does not match the LLM hidden size ({hidden})')
        )
    for declared, expected, message in checks:
        if declared is not None and expected is not None and declared != expected:
            raise ConfigError(f'{where}: {message}')


def _looks_local(path: Any) -> bool:
    return isinstance(path, str) and path.startswith(('/', './', '../', '~'))


def _check_shards(cfg: Config, where: str) -> None:
    """Dataset shards: none found is refused, some missing is a warning."""
    for split in ('train', 'val', 'test'):
        dataset = (cfg.get(f'{split}_dataloader') or {}).get('dataset') or {}
        data_dir, shards = dataset.get('data_dir'), dataset.get('shards')
        if isinstance(data_dir, str) and not osp.isfile(osp.join(data_dir, 'manifest.json')):
            raise ConfigError(
                f'{where}: {split}_dataloader.dataset.data_dir: {data_dir} has no manifest.json; '
                'prepare it with '
                f'tools/prepare_data.py FORMAT SOURCE --out {data_dir} (docs/data.md)'
            )
        if shards is None:
            continue
        urls = [
            u for s in ([shards] if isinstance(shards, str) else shards) for u in braceexpand.braceexpand(s)
        ]
        files = [u for u in urls if '://' not in u and not u.startswith('pipe:')]
        missing = [u for u in files if not glob.glob(osp.expanduser(u))]
        if files and len(missing) == len(files):
            raise ConfigError(f'{where}: {split}_dataloader.dataset.shards: none of {missing} exists')
        if missing:
            print_log(
                f'{where}: {split}_dataloader.dataset.shards: missing {missing}', logger='current', level=30
            )


def _weight_files(cfg: Config) -> Iterator[tuple[str, Any, bool]]:
    """``(key, value, must_be_a_file)``: the model parts' arguments (a part's declared ``file_arguments``
    must name local files; any other argument is checked when it looks like a local path), ``load_from``
    and every file of ``load_parts``."""
    for part in ('vision_encoder', 'language_model'):
        node, cls = _part_class(cfg.model, part)
        files = set(getattr(cls, 'file_arguments', ()))
        for arg, value in node.items():
            if isinstance(value, str) and arg != 'type':
                yield f'{part}.{arg}', value, arg in files
    yield 'load_from', cfg.get('load_from'), True
    for part, path in (cfg.get('load_parts') or {}).items():
        yield f'load_parts.{part}', path, True


def _check_paths(cfg: Config, where: str) -> None:
    _check_shards(cfg, where)
    for key, path, must_be_a_file in _weight_files(cfg):
        if isinstance(path, str) and (must_be_a_file or _looks_local(path)):
            if not osp.exists(osp.expanduser(path)):
                raise ConfigError(f'{where}: {key}={path!r} does not exist')


def _check_packaged(cfg: Config, where: str) -> None:
    from .models.packaged_weights import PACKAGED

    unknown = [name for name in cfg.get('packaged_weights') or () if name not in PACKAGED]
    if unknown:
        raise ConfigError(f'{where}: packaged_weights {unknown} are not known; known: {sorted(PACKAGED)}')


def _check_accumulation(cfg: Config, where: str) -> None:
    accumulate = (cfg.get('optim_wrapper') or {}).get('accumulative_counts') or 1
    interval = ((cfg.get('default_hooks') or {}).get('checkpoint') or {}).get('interval')
    if accumulate > 1 and interval and interval % accumulate:
        raise ConfigError(
            f'{where}: default_hooks.checkpoint.interval={interval} is not a multiple of '
            f'optim_wrapper.accumulative_counts={accumulate}: a checkpoint in the middle of an accumulated '
            'step loses the gradients accumulated so far, so a run resumed from it would differ'
        )


def check_config(cfg: Config) -> Config:
    """Raises :class:`ConfigError` for the first problem found (see the module docstring); returns ``cfg``."""
    where = cfg.filename or '<config>'
    unknown = sorted(k for k in cfg.keys() if k not in RUNNER_KEYS | VLKIT_KEYS and not k.startswith('_'))
    if unknown:
        known = sorted(RUNNER_KEYS | VLKIT_KEYS)
        raise ConfigError(
            f'{where}: unknown top-level key(s) {unknown}; known keys: {known}.{_closest(unknown[0], known)}'
        )
    for key, node, registry in _components(cfg):
        cls = _resolve(key, node, registry, where)
        if cls is not None and (key.startswith('model') or key.endswith('.dataset')):
            _check_arguments(key, node, cls, where)
    _check_dimensions(cfg.model, cfg.get('image_size'), where)
    for stage in PRETRAINING_STAGES:
        conflict = second_weights_source(cfg, stage)
        if conflict:
            weights, what = conflict
            raise ConfigError(
                f'{where}: {stage} and {weights} both set the {what} weights; set {stage}=None to use '
                f'{weights}, or drop {weights}'
            )
    _check_packaged(cfg, where)
    _check_accumulation(cfg, where)
    _check_paths(cfg, where)
    return cfg
