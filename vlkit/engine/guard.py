"""Stopping (or skipping) on a non-finite loss or gradient norm instead of training through NaN.

MMEngine steps the optimiser whatever the loss is and then saves the NaN weights with exit code 0.
:class:`GuardedOptimWrapper` never applies a step whose loss or total gradient norm is not finite; it
records why in ``fault``. :class:`NonFiniteGuardHook` runs first after each iteration and either stops the
run with :class:`NonFiniteError` (``action='raise'``, before any checkpoint of that iteration is written)
or counts and logs the skipped step (``action='skip'``).

Under DDP the backward pass always runs, so every rank joins the gradient all-reduce; a NaN on one rank
then reaches every rank's gradient norm, and all ranks take the same decision.
"""

from __future__ import annotations

import math

import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper

from ..registry import HOOKS, OPTIM_WRAPPERS


class TrainingFault(RuntimeError):
    """A fault that stops training with a message for the user (the train tool prints it and exits 1)."""


class NonFiniteError(TrainingFault):
    """A loss or gradient norm was NaN or infinite."""


@OPTIM_WRAPPERS.register_module()
class GuardedOptimWrapper(OptimWrapper):
    """``OptimWrapper`` that drops an update whose loss or total gradient norm is not finite.

    After each ``update_params`` call, ``fault`` is ``None`` or says what was not finite
    (``'loss=nan'``, ``'gradient norm=inf'``). Gradient clipping and accumulation work as in ``OptimWrapper``.
    """

    fault: str | None = None

    def update_params(
        self, loss: torch.Tensor, step_kwargs: dict | None = None, zero_kwargs: dict | None = None
    ):
        self.fault = None
        self.backward(self.scale_loss(loss))
        if not math.isfinite(loss.item()):
            self.fault = f'loss={loss.item()}'
        if not self.should_update():
            return
        norm = self.grad_norm()
        if self.fault is None and not math.isfinite(norm):
            self.fault = f'gradient norm={norm}'
        if self.fault is None:
            self.step(**(step_kwargs or {}))
        self.zero_grad(**(zero_kwargs or {}))

    def grad_norm(self) -> float:
        """The L2 norm of all gradients together (the quantity ``clip_grad`` with ``max_norm`` clips)."""
        grads = [
            p.grad for group in self.optimizer.param_groups for p in group['params'] if p.grad is not None
        ]
        return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0


def _loss_terms(outputs: dict | None) -> dict[str, float]:
    """The scalar entries of ``train_step``'s log variables, as floats."""
    scalars = (int, float, torch.Tensor)
    return {
        k: float(torch.as_tensor(v).detach()) for k, v in (outputs or {}).items() if isinstance(v, scalars)
    }


@HOOKS.register_module()
class NonFiniteGuardHook(Hook):
    """Stops the run, or skips the step, when a loss term or the gradient norm is not finite.

    Args:
        action: ``'raise'`` stops with an error naming the iteration and the loss terms (no checkpoint is
            saved for that iteration; earlier ones are kept); ``'skip'`` drops the update, counts it in
            ``train/skipped_steps`` and logs a warning.

    With an optimiser wrapper other than :class:`GuardedOptimWrapper` only the loss terms are checked, and
    after the update has been applied.
    """

    priority = 'VERY_HIGH'  # before the logger and the checkpoint hook

    def __init__(self, action: str = 'raise') -> None:
        if action not in ('raise', 'skip'):
            raise ValueError(f"NonFiniteGuardHook: action must be 'raise' or 'skip', got {action!r}")
        self.action = action

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs: dict | None = None) -> None:
        fault = getattr(runner.optim_wrapper, 'fault', None)
        terms = _loss_terms(outputs)
        if fault is None and all(math.isfinite(v) for v in terms.values()):
            return
        terms = ', '.join(f'{k}={v:.4g}' for k, v in terms.items())
        where = f'iteration {runner.iter + 1}: {fault or "loss not finite"} (loss terms: {terms})'
        if self.action == 'raise':
            raise NonFiniteError(
                f'non-finite value at {where}; stopped before saving a checkpoint for this iteration. '
                "Set default_hooks.non_finite.action='skip' to drop such steps instead."
            )
        # runtime info is saved in checkpoints, so the count carries over a resume
        skipped = runner.message_hub.get_info('skipped_steps', 0) + 1
        runner.message_hub.update_info('skipped_steps', skipped)
        runner.message_hub.update_scalar('train/skipped_steps', skipped)
        runner.logger.warning(f'skipped the update at {where}; {skipped} step(s) skipped so far')
