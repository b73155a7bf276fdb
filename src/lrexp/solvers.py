"""How LogisticRegression's parameters are fitted: the optimizer and its schedule, the steps of
one Lightning training step, the L1 proximal step, and the convergence report.

- sgd / adam: one optimizer step per minibatch. A Lightning step gets a group of minibatches
  (lrexp.data.batches), so Lightning's per-step bookkeeping is paid once per group; the updates
  are exactly those of one minibatch per Lightning step.
- lbfgs: once per epoch, `max_iter` iterations of full-batch L-BFGS with a strong-Wolfe line
  search on the whole training split (CentredFloat64); the run stops once the objective's
  largest gradient entry is <= `tol` (scipy's pgtol, which scikit-learn's lbfgs `tol` sets).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lrexp.errors import LrexpError
from lrexp.lightning_fast import plain_step, step_hooks_idle

if TYPE_CHECKING:
    from lrexp.data.batches import Minibatches
    from lrexp.model import LogisticRegression

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "lbfgs")
SCHEDULERS = ("cosine", "linear", "plateau")  # or null: a constant learning rate
# Learning rate when model.lr=auto: Adam's usual default; L-BFGS' unit first step (its line
# search scales it); for SGD see sgd_auto_lr.
AUTO_LR = {"adam": 1e-3, "lbfgs": 1.0}


def class_weights(
    spec: str | Sequence[float] | None, counts: Sequence[int] | None, num_classes: int
) -> Tensor | None:
    """One weight per label: null → none; balanced → n / (K · rows of the label), as
    scikit-learn's class_weight='balanced'; or the list as given."""
    if spec is None:
        return None
    if spec == "balanced":
        if counts is None or 0 in counts:
            raise LrexpError(
                f"model.class_weight=balanced needs rows of every label in the training split "
                f"(rows per label: {list(counts or [])})"
            )
        total = sum(counts)
        return torch.tensor([total / (num_classes * c) for c in counts])
    return torch.tensor([float(w) for w in spec])


def resolve_lr(
    lr: float | str,
    optimizer: str,
    train_x: Tensor,
    batch_size: int,
    num_classes: int,
    momentum: float = 0.0,
) -> float:
    """model.lr, with `auto` replaced by the optimizer's own choice."""
    if lr != "auto":
        return float(lr)
    if optimizer in AUTO_LR:
        return AUTO_LR[optimizer]
    return sgd_auto_lr(train_x, batch_size, num_classes, momentum)


def sgd_auto_lr(x: Tensor, batch_size: int, num_classes: int, momentum: float = 0.0) -> float:
    """SGD's step for model.lr=auto: (1 + momentum) / L_B, half the largest step with which
    heavy-ball SGD stays stable where the loss is most curved (2 (1 + momentum) / L_B; plain
    SGD: the classic 1 / L_B), whatever the features' scale. L_B is the expected smoothness of
    the minibatch loss (Gower et al., 2019, "SGD: general analysis and improved rates"):

        L_B = n (B - 1) / (B (n - 1)) · L + (n - B) / (B (n - 1)) · L_max

    with L = c · λ_max(XᵀX / n) the full loss's and L_max = c · max‖x‖² a single row's
    smoothness; c bounds the cross-entropy's curvature: 1/4 for the sigmoid, 1/2 for softmax.
    λ_max comes from a few power iterations.
    """
    x = x.double()
    n = len(x)
    c = 0.25 if num_classes == 2 else 0.5
    generator = torch.Generator().manual_seed(0)
    v = torch.randn(x.shape[1], generator=generator, dtype=x.dtype).to(x.device)
    for _ in range(30):
        v = x.T @ (x @ v) / n
        v = v / v.norm().clamp_min(1e-300)
    full = c * (x @ v).pow(2).mean().item()
    single = c * x.pow(2).sum(1).max().item()
    b = min(batch_size, n)
    expected = (n * (b - 1) * full + (n - b) * single) / (b * max(n - 1, 1))
    return (1.0 + momentum) / max(expected, 1e-12)


def configure(model: LogisticRegression) -> dict[str, Any]:
    """The optimizer, and Lightning's scheduler config for reduce-on-plateau. SGD and Adam get
    the L2 penalty as the weight's own weight decay (its gradient, `l2_decay · w`, added by the
    optimizer's fused update instead of a penalty term in every step's graph); L-BFGS minimises
    the objective with its penalty term (model.objective)."""
    hp = model.hparams
    lr = hp.lr
    if hp.optimizer in ("sgd", "adam"):
        params = [
            {"params": [model.linear.weight], "weight_decay": hp.weight_decay + l2_decay(model)},
            {"params": [model.linear.bias], "weight_decay": hp.weight_decay},
        ]
    if hp.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=lr, momentum=hp.momentum)
    elif hp.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=lr)
    else:
        # L-BFGS moves float64 copies of the parameters (CentredFloat64.parameters); each epoch's
        # step copies them from and back to the model's.
        optimizer = torch.optim.LBFGS(
            CentredFloat64.parameters(model),
            lr=lr,
            max_iter=hp.max_iter,
            tolerance_grad=hp.tol,
            # scipy's ftol as scikit-learn sets it (64 float64 epsilons): stop once a step
            # changes the objective by less than float64 can see.
            tolerance_change=64 * torch.finfo(torch.float64).eps,
            history_size=10,
            line_search_fn="strong_wolfe",
        )
    unused = {"adam": ["momentum"], "lbfgs": ["momentum", "scheduler"]}.get(hp.optimizer, [])
    if said := [f"model.{key}={hp[key]}" for key in unused if hp[key]]:
        log.info(f"{', '.join(said)}: not used by {hp.optimizer}")
    if hp.scheduler != "plateau" or hp.optimizer == "lbfgs":
        return {"optimizer": optimizer}
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=1)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler}}


def l2_decay(model: LogisticRegression, rows: int = 1) -> float:
    """The L2 penalty's gradient per unit weight, (1 - l1_ratio) / (C·n); with reduction=sum
    times the `rows` of the step (its share of the summed objective)."""
    hp = model.hparams
    if hp.C is None or hp.l1_ratio == 1:
        return 0.0
    share = rows if hp.reduction == "sum" else 1
    return (1 - hp.l1_ratio) * share / (hp.C * model.train_rows)


# The step-size schedules decaying to 0 over the run: the factor at a share of the run's steps.
DECAYS = {
    "linear": lambda progress: 1.0 - progress,
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
}


def scheduled_lr(model: LogisticRegression, step: int) -> float:
    """The learning rate of SGD step `step` (0-based, over the whole run): a function of the
    step alone, so a resumed run takes the steps of an uninterrupted one."""
    return model.hparams.lr * DECAYS[model.hparams.scheduler](min(step / model.total_steps, 1.0))


def on_train_start(model: LogisticRegression) -> None:
    trainer = model.trainer
    model.plain_steps = model.fast and step_hooks_idle(trainer)
    loader = trainer.train_dataloader
    per_epoch = getattr(getattr(loader, "sampler", None), "minibatches_per_epoch", None)
    if trainer.max_steps > 0:
        model.total_steps = trainer.max_steps
    elif trainer.max_epochs is not None and trainer.max_epochs > 0:
        model.total_steps = max(trainer.max_epochs * (per_epoch or len(loader)), 1)
    elif model.hparams.scheduler in DECAYS:
        raise LrexpError(
            f"model.scheduler={model.hparams.scheduler} decays over the run, which has no end: "
            "set trainer.max_epochs (or trainer.max_steps), or model.scheduler=null"
        )


def minibatch_steps(model: LogisticRegression, group: Minibatches) -> None:
    """One SGD/Adam step per minibatch of the group, then the epoch metrics' update."""
    hp = model.hparams
    optimizer = model.optimizers()
    weight_group, bias_group = optimizer.optimizer.param_groups
    scheduled = hp.scheduler in DECAYS
    per_rows = hp.reduction == "sum" and l2_decay(model, 1) > 0
    step = model.trainer.global_step  # SGD steps so far in the run
    all_logits, all_targets, losses = [], [], []
    for x, y in group.sharing_one_buffer():  # x: valid until the next minibatch is drawn
        if scheduled:
            weight_group["lr"] = bias_group["lr"] = scheduled_lr(model, step)
        if per_rows:
            weight_group["weight_decay"] = hp.weight_decay + l2_decay(model, len(y))
        logits = model.logits(x)
        loss = model.loss(logits, y)
        if model.plain_steps:
            plain_step(optimizer, loss)
        else:
            optimizer.zero_grad()
            model.manual_backward(loss)
            optimizer.step()
        l1_prox(model, optimizer.optimizer, len(y))
        step += 1
        all_logits.append(logits.detach())
        all_targets.append(y)
        losses.append(loss.detach())
    losses = torch.stack(losses)
    _check_finite(model, losses)
    # Only the epoch's last minibatch can be short; made on the device, these weights cost
    # no host-to-device copy.
    sizes = torch.full_like(losses, len(all_targets[0]))
    sizes[-1] = len(all_targets[-1])
    if train_scores_due(model):
        probs = model.probs(torch.cat(all_logits))
        model.metrics.update("train", probs, torch.cat(all_targets), losses, sizes)
    else:
        model.metrics.update_loss("train", losses, sizes)


class CentredFloat64:
    """The whole training split as L-BFGS minimises the objective on it:

    - in float64, whatever the parameters' dtype: near the optimum the objective changes by
      less than float32's rounding of x·w, so float32 L-BFGS stalls short of the optimum;
    - with the columns centred, L-BFGS moving (w, c) with c = b + w·μ, the logit of the mean
      row. The intercept is not penalised, so this change of variables keeps the optimum; it
      decouples the intercept from the weights, which on features that are all >= 0 (pixels)
      are otherwise one ill-conditioned direction.

    Memory: a float64 copy of the training split, kept from the fit's start to its end.
    """

    def __init__(self, x: Tensor, y: Tensor) -> None:
        x = x.double()
        self.mean = x.mean(0)
        self.x, self.y = x.sub_(self.mean), y

    @staticmethod
    def parameters(model: LogisticRegression) -> list[Tensor]:
        """(w, c) in float64, on the model's device; the values come with each step (load)."""
        return [
            torch.zeros_like(p, dtype=torch.float64, requires_grad=True)
            for p in (model.linear.weight, model.linear.bias)
        ]

    def objective(self, model: LogisticRegression, weight: Tensor, centred_bias: Tensor) -> Tensor:
        logits = F.linear(self.x, weight, centred_bias)
        logits = logits.squeeze(-1) if model.hparams.num_classes == 2 else logits
        return model.loss(logits, self.y) + model.penalty(len(self.y), weight)

    @torch.no_grad()
    def load(self, model: LogisticRegression, weight: Tensor, centred_bias: Tensor) -> None:
        weight.copy_(model.linear.weight)
        centred_bias.copy_(model.linear.bias.double() + weight @ self.mean)

    @torch.no_grad()
    def store(self, model: LogisticRegression, weight: Tensor, centred_bias: Tensor) -> None:
        model.linear.weight.copy_(weight)
        model.linear.bias.copy_(centred_bias - weight @ self.mean)


def on_train_end(model: LogisticRegression) -> None:
    model.lbfgs_problem = None  # the float64 copy of the training split


def full_batch_step(model: LogisticRegression, group: Minibatches) -> None:
    """`max_iter` L-BFGS iterations on the whole training split (the rows the group's loader
    holds), once per epoch: the epoch's other groups are skipped (on_train_batch_start)."""
    x, y = group.source.x, group.source.y
    if model.lbfgs_problem is None:  # the fit's first step
        model.lbfgs_problem = CentredFloat64(x, y)
    problem = model.lbfgs_problem
    optimizer = model.optimizers()
    weight, centred_bias = optimizer.optimizer.param_groups[0]["params"]
    problem.load(model, weight, centred_bias)

    def closure() -> Tensor:
        optimizer.zero_grad()
        objective = problem.objective(model, weight, centred_bias)
        model.manual_backward(objective)
        return objective

    optimizer.step(closure=closure)
    problem.store(model, weight, centred_bias)
    with torch.no_grad():
        logits = model.logits(x)
        loss = model.loss(logits, y).reshape(1)
    _check_finite(model, loss)
    model.solver_report = objective_report(model, x, y)
    grad_norm = model.solver_report["train/grad_norm"]
    if grad_norm <= model.hparams.tol:  # as scikit-learn stops: later epochs would not move
        log.info(
            f"L-BFGS converged in epoch {model.current_epoch}: the largest gradient entry "
            f"{grad_norm:.2g} <= model.tol={model.hparams.tol:g}; the run stops"
        )
        model.trainer.should_stop = True
        # This last epoch validates (and so checkpoints) whatever check_val_every_n_epoch says:
        # the run's checkpoints and scores then include the optimum, not an earlier iterate.
        model.trainer.check_val_every_n_epoch = 1
    sizes = torch.full_like(loss, len(y))
    if train_scores_due(model):
        model.metrics.update("train", model.probs(logits), y, loss, sizes)
    else:
        model.metrics.update_loss("train", loss, sizes)


def epoch_report(model: LogisticRegression) -> dict[str, float]:
    """What the epoch's training values add: L-BFGS' objective and gradient norm."""
    report, model.solver_report = model.solver_report or {}, None
    return report


def l1_prox(model: LogisticRegression, optimizer: torch.optim.Optimizer, rows: int) -> None:
    """The L1 part of the regulariser as a proximal (soft-threshold) step after each update, so
    that weights become exact zeros.

    SGD uses the cumulative penalty of Tsuruoka et al. (2009): each weight is clipped at zero by
    the L1 penalty accumulated over all steps so far (`l1_total`) less what it already received
    (`l1_received`). Plain per-step thresholds let minibatch noise keep small weights off zero
    once the step size has decayed; the cumulative one does not. For Adam the threshold is per
    coordinate, as Adam scales the step (lr / (sqrt(v̂) + eps)).
    """
    hp = model.hparams
    if hp.C is None or not hp.l1_ratio:
        return
    weight = model.linear.weight
    share = rows / model.train_rows if hp.reduction == "sum" else 1 / model.train_rows
    strength = hp.l1_ratio * share / hp.C
    group = optimizer.param_groups[0]
    with torch.no_grad():
        if hp.optimizer == "adam":
            state = optimizer.state[weight]
            v_hat = state["exp_avg_sq"] / (1 - group["betas"][1] ** float(state["step"]))
            step = group["lr"] / (v_hat.sqrt() + group["eps"])
            weight.copy_(weight.sign() * (weight.abs() - step * strength).clamp_min(0))
            return
        # Heavy ball moves a steady gradient lr / (1 - momentum) per step; the penalty, a
        # steady pull too, is applied at that same rate.
        model.l1_total += group["lr"] * strength / (1 - group["momentum"])
        before = weight.clone()
        positive, negative = weight > 0, weight < 0
        weight.copy_(
            torch.where(
                positive,
                (weight - (model.l1_total + model.l1_received)).clamp_min(0),
                torch.where(
                    negative, (weight + (model.l1_total - model.l1_received)).clamp_max(0), weight
                ),
            )
        )
        model.l1_received += weight - before


def objective_report(model: LogisticRegression, x: Tensor, y: Tensor) -> dict[str, float]:
    """The full regularised objective on (x, y) — the whole training split — and the largest
    entry of its (minimum-norm sub)gradient: 0 at the optimum. With lbfgs both are L-BFGS' own
    (CentredFloat64: float64, the gradient in (w, c)), so the gradient is the one it stops on."""
    hp = model.hparams
    params = [model.linear.weight, model.linear.bias]
    with torch.enable_grad():
        if hp.optimizer == "lbfgs":
            problem = model.lbfgs_problem or CentredFloat64(x, y)
            params = CentredFloat64.parameters(model)
            problem.load(model, *params)
            objective = problem.objective(model, *params)
        else:
            objective = model.objective(x, y, float64=True)
        grad_w, grad_b = torch.autograd.grad(objective, params)
    weight = model.linear.weight.detach()
    if hp.C is not None and hp.l1_ratio:
        rows = len(y) if hp.reduction == "sum" else 1
        strength = hp.l1_ratio * rows / (model.train_rows * hp.C)
        objective = objective + strength * weight.abs().sum()
        grad_w = torch.where(
            weight != 0,
            grad_w + strength * weight.sign(),
            (grad_w.abs() - strength).clamp_min(0),
        )
    grad_norm = torch.cat([grad_w.flatten(), grad_b.flatten()]).abs().max()
    values = torch.stack([objective.detach(), grad_norm]).tolist()
    return {"train/objective": values[0], "train/grad_norm": values[1]}


def training_rows(model: LogisticRegression) -> tuple[Tensor, Tensor] | None:
    """The training split's features and labels as the train loader holds them (this device)."""
    dataset = getattr(model.trainer.train_dataloader, "dataset", None)
    x, y = getattr(dataset, "x", None), getattr(dataset, "y", None)
    return (x, y) if x is not None and y is not None else None


def after_validation(model: LogisticRegression, values: dict[str, float]) -> None:
    """Reduce-on-plateau steps on each validation's val/loss."""
    if model.hparams.scheduler == "plateau":
        model.lr_schedulers().step(values["val/loss"])


def train_scores_due(model: LogisticRegression) -> bool:
    """Whether this epoch computes train/acc, auroc, f1 and ece: on the epochs that validate
    (so train and val curves share their points) and the last; train/loss every epoch."""
    trainer = model.trainer
    every = trainer.check_val_every_n_epoch or 1
    epoch = model.current_epoch + 1
    return epoch % every == 0 or epoch == trainer.max_epochs


def _check_finite(model: LogisticRegression, losses: Tensor) -> None:
    """Stop as soon as the loss or the updated weights are inf/NaN — before a checkpoint could
    store them, so the last checkpoint on disk stays a finite one."""
    weights = torch.cat([p.detach().flatten() for p in model.linear.parameters()])
    if torch.isfinite(torch.cat([losses.to(weights.dtype), weights])).all():
        return
    lr = model.hparams.lr
    raise LrexpError(
        f"training diverged in epoch {model.current_epoch}: the training loss (max "
        f"{losses.max().item():.3g}) or the weights became inf/nan. Lower model.lr "
        f"(now {lr:g}, e.g. model.lr={lr / 10:g}); checkpoints/ keeps the last finite one"
    )
