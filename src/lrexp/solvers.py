"""How LogisticRegression's parameters are fitted: one solver object per model.optimizer, each
owning its optimizer, its per-fit state and the config keys it uses. Gradients come in closed
form from lrexp.objective; no step builds an autograd graph.

- sgd / adam (MinibatchSolver): one update per minibatch. A Lightning step gets a group of
  minibatches (lrexp.data.batches), so Lightning's per-step bookkeeping is paid once per group;
  the updates are exactly those of one minibatch per Lightning step. L1 is a proximal step
  after each update.
- lbfgs (LBFGSSolver): once per epoch, `max_iter` iterations of full-batch L-BFGS with a
  strong-Wolfe line search on the whole training split (CentredFloat64; a streamed split:
  StreamedFloat64, one pass over the stream per evaluation, all-reduced over the ranks); the
  run stops once the objective's largest gradient entry is <= `tol` (scipy's pgtol, which
  scikit-learn's lbfgs `tol` sets).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from lrexp.data.wide_features import (
    Features,
    WideFeatures,
    linear,
    row_squared_norms,
    transposed_product,
)
from lrexp.errors import LrexpError
from lrexp.lightning_fast import checkpoint_this_epoch, count_step, step_hooks_idle
from lrexp.stream_objective import Passes, StreamedSums

if TYPE_CHECKING:
    from lightning.pytorch.core.optimizer import LightningOptimizer

    from lrexp.data.batches import Minibatches
    from lrexp.model import LogisticRegression
    from lrexp.objective import Labels, Objective

log = logging.getLogger(__name__)

SCHEDULERS = ("cosine", "linear", "plateau")  # or null: a constant learning rate
# The step-size schedules decaying to 0 over the run: the factor at a share of the run's steps.
DECAYS = {
    "linear": lambda progress: 1.0 - progress,
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
}


def sgd_auto_lr(
    x: Features,
    batch_size: int,
    num_classes: int,
    momentum: float = 0.0,
    sample_weight: Tensor | None = None,
) -> float:
    """SGD's step for model.lr=auto: (1 + momentum) / L_B, half the largest step with which
    heavy-ball SGD stays stable where the loss is most curved (2 (1 + momentum) / L_B; plain
    SGD: the classic 1 / L_B), whatever the features' scale. L_B is the expected smoothness of
    the minibatch loss (Gower et al., 2019, "SGD: general analysis and improved rates"):

        L_B = n (B - 1) / (B (n - 1)) · L + (n - B) / (B (n - 1)) · L_max

    with L = c · λ_max(XᵀX / n) the full loss's and L_max = c · max‖x‖² a single row's
    smoothness; c bounds the cross-entropy's curvature: 1/4 for the sigmoid, 1/2 for softmax.
    λ_max comes from a few power iterations. With sample weights each row's curvature scales
    with its weight relative to the mean weight: the rows are scaled by its square root.
    """
    x = x.double()
    if sample_weight is not None:
        relative = sample_weight.double() / sample_weight.double().mean()
        scale = relative.sqrt()
        x = x.scale_rows(scale) if isinstance(x, WideFeatures) else x * scale[:, None]
    n = len(x)
    c = 0.25 if num_classes == 2 else 0.5
    generator = torch.Generator().manual_seed(0)
    v = torch.randn(x.shape[1], generator=generator, dtype=x.dtype).to(x.device)
    if isinstance(x, WideFeatures):
        zero = v.new_zeros(1)
        for _ in range(30):
            v = transposed_product(linear(x, v[None], zero).t(), x)[0] / n
            v = v / v.norm().clamp_min(1e-300)
        full = c * linear(x, v[None], zero).pow(2).mean().item()
    else:
        for _ in range(30):
            v = x.T @ (x @ v) / n
            v = v / v.norm().clamp_min(1e-300)
        full = c * (x @ v).pow(2).mean().item()
    single = c * row_squared_norms(x).max().item()
    b = min(batch_size, n)
    expected = (n * (b - 1) * full + (n - b) * single) / (b * max(n - 1, 1))
    return (1.0 + momentum) / max(expected, 1e-12)


class Solver(nn.Module):
    """A way of fitting the model: its optimizer, the steps of one Lightning training step, and
    what the epoch reports. A Module so that its state (the L1 penalty's running totals) lives
    in the model's checkpoint."""

    name: ClassVar[str]
    # model.* keys this solver ignores: a set one is reported once, when the fit starts.
    ignores: ClassVar[tuple[str, ...]] = ()
    # model.lr=auto: the step this solver takes whatever the data; None: measured on the data
    # (sgd_auto_lr).
    default_lr: ClassVar[float | None] = None

    def __init__(self, hparams: Any) -> None:
        super().__init__()
        self.hp = hparams
        self.report: dict[str, float] = {}
        self.last_grad_norm: float | None = None  # where the solver measured it at the end

    def configure(self, model: LogisticRegression) -> dict[str, Any]:
        raise NotImplementedError

    def say_ignored(self) -> None:
        if said := [f"model.{key}={self.hp[key]}" for key in self.ignores if self.hp.get(key)]:
            log.info(f"{', '.join(said)}: not used by {self.name}")

    def on_train_start(self, model: LogisticRegression) -> None:
        """Per fit: nothing by default."""

    def training_step(self, model: LogisticRegression, group: Minibatches) -> None:
        raise NotImplementedError

    def on_train_end(self, model: LogisticRegression) -> None:
        """Per fit: nothing by default."""

    def reset(self) -> None:
        """Forget the running state of earlier fits (a new penalty: lrexp.path)."""
        for buffer in self.buffers():
            buffer.zero_()
        self.last_grad_norm = None

    def epoch_report(self) -> dict[str, float]:
        """What the epoch's training values add (L-BFGS: its objective and gradient norm)."""
        report, self.report = self.report, {}
        return report

    def skips_rest_of_epoch(self, batch_idx: int) -> bool:
        return False


class MinibatchSolver(Solver):
    """SGD (heavy ball) or Adam, one update per minibatch, on the closed-form gradient."""

    def __init__(self, hparams: Any, weight: Tensor) -> None:
        super().__init__(hparams)
        self.total_steps = 1  # the run's SGD steps, for the decaying schedules
        self.world_size = 1
        self.plain_steps = False  # torch's own update calls allowed (lightning_fast)
        self.flat: FlatParameters | None = None  # during a fit
        if hparams.C is not None and hparams.l1_ratio:  # the cumulative penalty of l1_prox
            self.register_buffer("l1_total", torch.zeros(()))
            self.register_buffer("l1_received", torch.zeros_like(weight))

    def configure(self, model: LogisticRegression) -> dict[str, Any]:
        """torch's optimizer holds the state (momentum, Adam's moments) that checkpoints carry;
        `weight_decay` is torch's L2 on every parameter, the intercept too, besides the
        objective's (model.C)."""
        params = list(model.linear.parameters())
        if self.name == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=self.hp.lr, momentum=self.hp.momentum, weight_decay=self.hp.weight_decay
            )
        else:
            optimizer = torch.optim.Adam(params, lr=self.hp.lr, weight_decay=self.hp.weight_decay)
        self.say_ignored()
        if self.hp.scheduler != "plateau":
            return {"optimizer": optimizer}
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler}}

    def on_train_start(self, model: LogisticRegression) -> None:
        trainer = model.trainer
        self.plain_steps = model.fast and step_hooks_idle(trainer)
        self.world_size = trainer.world_size
        loader = trainer.train_dataloader
        per_epoch = getattr(getattr(loader, "sampler", None), "minibatches_per_epoch", None)
        if trainer.max_steps > 0:
            self.total_steps = trainer.max_steps
        elif trainer.max_epochs is not None and trainer.max_epochs > 0:
            self.total_steps = max(trainer.max_epochs * (per_epoch or len(loader)), 1)
        elif self.hp.scheduler in DECAYS:
            raise LrexpError(
                f"model.scheduler={self.hp.scheduler} decays over the run, which has no end: "
                "set trainer.max_epochs (or trainer.max_steps), or model.scheduler=null"
            )
        # After Lightning has restored a checkpoint and moved the model to its device.
        self.flat = FlatParameters(list(model.linear.parameters()))
        self.flat.adopt_momentum(model.optimizers().optimizer)

    def on_train_end(self, model: LogisticRegression) -> None:
        self.flat.release()
        self.flat = None

    def scheduled_lr(self, step: int) -> float:
        """The learning rate of SGD step `step` (0-based, over the whole run): a function of the
        step alone, so a resumed run takes the steps of an uninterrupted one."""
        return self.hp.lr * DECAYS[self.hp.scheduler](min(step / self.total_steps, 1.0))

    def training_step(self, model: LogisticRegression, group: Minibatches) -> None:
        """One update per minibatch of the group, then the epoch metrics' update. The group's
        labels are gathered and prepared once; each minibatch's logits are kept, and its loss
        taken from them with the others' in one pass (GroupLogits)."""
        optimizer = model.optimizers()
        torch_optimizer = optimizer.optimizer
        (param_group,) = torch_optimizer.param_groups
        self.flat.attach_grads()
        scheduled = self.hp.scheduler in DECAYS
        scores = train_scores_due(model)
        step = model.trainer.global_step  # SGD steps so far in the run
        weight = model.linear.weight
        y, sample_weight = group.labels()
        labels = model.objective.labels(y, sample_weight, group.sizes(), weight.dtype)
        logits = GroupLogits(labels, len(weight), weight, keep_probs=scores)
        # x: valid until the next minibatch is drawn
        for t, x in enumerate(group.features()):
            if scheduled:
                param_group["lr"] = self.scheduled_lr(step)
            buffers = logits.of(t)
            if self.plain_steps:
                self.gradient(model, x, labels, t, *buffers)
                count_step(optimizer, self.update, torch_optimizer)
            else:
                stock_step(
                    optimizer,
                    lambda x=x, t=t, b=buffers: self.gradient(model, x, labels, t, *b),
                    model,
                )
            self.l1_prox(model, torch_optimizer, labels.counts[t])
            logits.done(t, model.objective)
            step += 1
        losses = logits.losses()
        check_finite(model, losses)
        sizes = losses.new_tensor(labels.counts)
        if scores:
            model.metrics.update("train", logits.probs(), y, losses, sizes, sample_weight)
        else:
            model.metrics.update_loss("train", losses, sizes)

    def gradient(
        self,
        model: LogisticRegression,
        x: Features,
        labels: Labels,
        minibatch: int,
        *buffers: Tensor | None,
    ) -> Tensor:
        """Minibatch `minibatch`'s gradient in the parameters' .grad (Objective.step_gradient_,
        into GroupLogits' buffers), averaged over the ranks under DDP, as DDP's backward hooks
        would; returns its logits (what a closure hands Lightning's precision plugin)."""
        weight, bias = model.linear.weight, model.linear.bias
        model.objective.step_gradient_(
            x.to(weight.dtype), labels, minibatch, weight, bias, weight.grad, bias.grad, *buffers
        )
        if self.world_size > 1:
            torch.distributed.all_reduce(self.flat.grads)
            self.flat.grads.div_(self.world_size)
        return buffers[0]

    def update(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer's own update from the gradients in .grad: for SGD the arithmetic of
        torch.optim.SGD's (momentum, no dampening or Nesterov) over the flat parameters, since
        its step() costs more than a small minibatch's whole gradient; for Adam, its step()."""
        if self.name != "sgd":
            optimizer.step()
            return
        (group,) = optimizer.param_groups
        self.flat.sgd_update(optimizer, group["lr"], group["momentum"], group["weight_decay"])

    def l1_prox(
        self, model: LogisticRegression, optimizer: torch.optim.Optimizer, rows: float
    ) -> None:
        """The L1 part of the regulariser as a proximal (soft-threshold) step after each update,
        so that weights become exact zeros.

        SGD uses the cumulative penalty of Tsuruoka et al. (2009): each weight is clipped at
        zero by the L1 penalty accumulated over all steps so far (`l1_total`) less what it
        already received (`l1_received`). Plain per-step thresholds let minibatch noise keep
        small weights off zero once the step size has decayed; the cumulative one does not. For
        Adam the threshold is per coordinate, as Adam scales the step (lr / (sqrt(v̂) + eps)).
        """
        objective = model.objective
        if not objective.l1:
            return
        weight = model.linear.weight
        strength = objective.l1 * objective.share(rows)
        (group,) = optimizer.param_groups
        if self.name == "adam":
            state = optimizer.state[weight]
            v_hat = state["exp_avg_sq"] / (1 - group["betas"][1] ** float(state["step"]))
            step = group["lr"] / (v_hat.sqrt() + group["eps"])
            weight.copy_(weight.sign() * (weight.abs() - step * strength).clamp_min(0))
            return
        # Heavy ball moves a steady gradient lr / (1 - momentum) per step; the penalty, a
        # steady pull too, is applied at that same rate.
        self.l1_total += group["lr"] * strength / (1 - group["momentum"])
        before = weight.clone()
        positive, negative = weight > 0, weight < 0
        weight.copy_(
            torch.where(
                positive,
                (weight - (self.l1_total + self.l1_received)).clamp_min(0),
                torch.where(
                    negative, (weight + (self.l1_total - self.l1_received)).clamp_max(0), weight
                ),
            )
        )
        self.l1_received += weight - before


# The most bytes of logits a group keeps for its deferred losses (GroupLogits): beyond it (many
# classes, large minibatches) the losses are taken every few minibatches instead.
GROUP_LOGIT_BYTES = 16 * 2**20


class GroupLogits:
    """The buffers a group's minibatch steps write into: each minibatch's logits, kept until
    their loss is taken for a window of minibatches at once (one pass, not one per minibatch;
    Objective.losses), a scratch for the residual, and, on scoring epochs, every row's
    probabilities for the epoch metrics. The losses are those of the weights each minibatch
    saw: the logits are its own."""

    def __init__(self, labels: Labels, outputs: int, like: Tensor, keep_probs: bool) -> None:
        self.labels = labels
        longest = max(labels.sizes)
        row_bytes = outputs * like.element_size()
        self.window = max(1, GROUP_LOGIT_BYTES // max(longest * row_bytes, 1))
        rows = labels.bounds[min(self.window, len(labels))]
        self.logits = like.new_empty(rows, outputs)
        self.scratch = like.new_empty(longest, outputs)
        self._probs = like.new_empty(len(labels.y), outputs) if keep_probs else None
        self.start = 0  # the first minibatch whose logits the buffer holds
        self.parts: list[Tensor] = []

    def of(self, minibatch: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """(logits, scratch, probabilities or None) for minibatch `minibatch`."""
        rows = self.labels.rows(minibatch)
        at = self.labels.bounds[self.start]
        logits = self.logits[rows.start - at : rows.stop - at]
        probs = None if self._probs is None else self._probs[rows]
        return logits, self.scratch[: len(logits)], probs

    def done(self, minibatch: int, objective: Objective) -> None:
        """After minibatch `minibatch`'s step: a full window (or the group's end) takes its
        losses."""
        stop = minibatch + 1
        if stop - self.start < self.window and stop < len(self.labels):
            return
        part = self.labels.part(self.start, stop)
        self.parts.append(objective.losses(self.logits[: len(part.y)], part))
        self.start = stop

    def losses(self) -> Tensor:
        return self.parts[0] if len(self.parts) == 1 else torch.cat(self.parts)

    def probs(self) -> Tensor:
        return self._probs.squeeze(-1) if self._probs.shape[1] == 1 else self._probs


class FlatParameters:
    """The layer's weight and bias as views of one tensor, and so their gradients and SGD's
    momentum buffers: an update is three in-place operations over all parameters, not three
    per parameter, and DDP averages the gradients in one all-reduce. The optimizer keeps
    per-parameter state (views of the flat buffers), so checkpoints are as torch.optim.SGD's."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        self.values = torch.cat([p.detach().flatten() for p in params])
        self.grads = torch.zeros_like(self.values)
        self.momentum: Tensor | None = None
        for p, view in zip(params, self.views(self.values), strict=True):
            p.data = view
        self.attach_grads()

    def views(self, flat: Tensor) -> list[Tensor]:
        sizes = [p.numel() for p in self.params]
        return [v.view_as(p) for v, p in zip(flat.split(sizes), self.params, strict=True)]

    def attach_grads(self) -> None:
        """.grad as views of `grads` (Lightning sets them to None before each validation:
        LightningModule.on_validation_model_zero_grad)."""
        if self.params[0].grad is None or self.params[0].grad.data_ptr() != self.grads.data_ptr():
            for p, view in zip(self.params, self.views(self.grads), strict=True):
                p.grad = view

    def adopt_momentum(self, optimizer: torch.optim.Optimizer) -> None:
        """Momentum buffers restored from a checkpoint, copied into one flat buffer."""
        buffers = [optimizer.state.get(p, {}).get("momentum_buffer") for p in self.params]
        if all(b is not None for b in buffers):
            self.momentum = torch.cat([b.flatten() for b in buffers])
            self.point_state(optimizer)

    def point_state(self, optimizer: torch.optim.Optimizer) -> None:
        for p, view in zip(self.params, self.views(self.momentum), strict=True):
            optimizer.state[p]["momentum_buffer"] = view

    def sgd_update(
        self, optimizer: torch.optim.Optimizer, lr: float, momentum: float, decay: float
    ) -> None:
        grad = self.grads.add(self.values, alpha=decay) if decay else self.grads
        if momentum:
            if self.momentum is None:  # torch.optim.SGD's first step: the buffer is the grad
                self.momentum = grad.clone()
                self.point_state(optimizer)
            else:
                self.momentum.mul_(momentum).add_(grad)
            grad = self.momentum
        self.values.add_(grad, alpha=-lr)

    def release(self) -> None:
        """The parameters their own storage again, without gradients."""
        for p in self.params:
            p.data = p.data.clone()
            p.grad = None


class SGD(MinibatchSolver):
    name = "sgd"


class Adam(MinibatchSolver):
    name = "adam"
    ignores = ("momentum",)
    default_lr = 1e-3  # Adam's usual default: its steps are scaled per coordinate


def stock_step(optimizer: LightningOptimizer, gradient: Any, model: LogisticRegression) -> None:
    """The step through Lightning's LightningOptimizer.step (its hooks, precision plugin and
    step count): the closure writes the closed-form gradient into .grad and returns the
    minibatch's logits (a plugin skips the update on None). Under loss scaling (16-mixed) the
    gradient is the scaled loss's, which the plugin unscales before the step."""
    scaler = getattr(model.trainer.precision_plugin, "scaler", None)

    def closure() -> Tensor:
        with torch.no_grad():
            logits = gradient()
            if scaler is not None:
                for p in model.linear.parameters():
                    p.grad.mul_(scaler.get_scale())
        return logits

    optimizer.step(closure=closure)


# Below this model.tol, L-BFGS' matrix products run in float64: float32 products stall near a
# largest gradient entry of 1e-6 (Fashion-MNIST 5 vs 7: 7e-7), so tolerances from 1e-5 up,
# scikit-learn's default 1e-4 among them, can use them (benchmarks/README.md).
FLOAT32_PRODUCTS_MIN_TOL = 1e-5


class CentredFloat64:
    """The whole training split as L-BFGS minimises the objective on it:

    - the objective in float64, whatever the parameters' dtype: near the optimum it changes by
      less than float32's rounding, so float32 L-BFGS stalls short of the optimum. The two
      matrix products per evaluation run in `products` (float32 for the looser tolerances:
      FLOAT32_PRODUCTS_MIN_TOL), everything else in float64;
    - with the columns centred, L-BFGS moving (w, c) with c = b + w·μ, the logit of the mean
      row. The intercept is not penalised, so this change of variables keeps the optimum; it
      decouples the intercept from the weights, which on features that are all >= 0 (pixels)
      are otherwise one ill-conditioned direction.

    Memory: a centred copy of the training split in `products`, kept from the fit's start to
    its end. A wide table's sparse block is centred implicitly, so that it stays sparse: with
    μ_s its column means, (X_s - 1μ_sᵀ) w_s = X_s w_s - μ_s·w_s moves into the intercept the
    products get, and the gradient's rᵀ(X_s - 1μ_sᵀ) = rᵀX_s - (Σr) μ_sᵀ.
    """

    def __init__(
        self,
        x: Features,
        y: Tensor,
        products: torch.dtype = torch.float64,
        sample_weight: Tensor | None = None,
    ) -> None:
        self.source = (x, y, sample_weight)
        self.implicit: Tensor | None = None  # μ where the copy is not centred (else 0)
        dense = x.dense if isinstance(x, WideFeatures) else x
        # μ rounded to `products`, the dtype the copy is centred in: then X - 1μᵀ is the copy
        # up to its own rounding, and (w, c) with c = b + w·μ the exact change of variables.
        # Centring in the products' dtype also never holds a float64 copy of a float32 split.
        mean = dense.mean(0).to(products)
        centred = dense.to(products) - mean
        self.mean = mean.double()
        if isinstance(x, WideFeatures):
            sums = x.sparse_column_sums()
            self.implicit = torch.cat([torch.zeros_like(self.mean), sums / max(len(x), 1)])
            self.mean = torch.cat([self.mean, self.implicit[len(mean) :]])
            self.x = x.with_dense(centred).to(products)
        else:
            self.x = centred
        self.y = y
        self.sample_weight = None if sample_weight is None else sample_weight.double()

    def holds(self, x: Features, y: Tensor, sample_weight: Tensor | None) -> bool:
        """Whether this is the problem of (x, y, sample_weight): the same values, as a later
        fit's loader serves them anew (lrexp.path; a wide table's features: the same object)."""
        return all(
            a is b
            or (
                isinstance(a, Tensor)
                and isinstance(b, Tensor)
                and a.shape == b.shape
                and torch.equal(a, b)
            )
            for a, b in zip(self.source, (x, y, sample_weight), strict=True)
        )

    @staticmethod
    def parameters(model: LogisticRegression) -> list[Tensor]:
        """(w, c) in float64, on the model's device; the values come with each step (load)."""
        return [torch.zeros_like(p, dtype=torch.float64) for p in model.linear.parameters()]

    def evaluate(self, objective: Objective, weight: Tensor, centred_bias: Tensor) -> Tensor:
        """J and (into .grad) its gradient at (w, c)."""
        value, weight.grad, centred_bias.grad = self.value_and_gradient(
            objective, weight, centred_bias
        )
        return value

    def value_and_gradient(
        self, objective: Objective, weight: Tensor, centred_bias: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """J's smooth part and its gradient in (w, c)."""
        if self.implicit is None:
            return objective.value_and_gradient(
                self.x, self.y, weight, centred_bias, self.sample_weight
            )
        value, grad_weight, grad_bias = objective.value_and_gradient(
            self.x, self.y, weight, centred_bias - weight @ self.implicit, self.sample_weight
        )
        return value, grad_weight.sub_(torch.outer(grad_bias, self.implicit)), grad_bias

    @torch.no_grad()
    def load(self, model: LogisticRegression, weight: Tensor, centred_bias: Tensor) -> None:
        weight.copy_(model.linear.weight)
        centred_bias.copy_(model.linear.bias.double() + weight @ self.mean)

    @torch.no_grad()
    def store(self, model: LogisticRegression, weight: Tensor, centred_bias: Tensor) -> None:
        model.linear.weight.copy_(weight)
        model.linear.bias.copy_(centred_bias - weight @ self.mean)


class StreamedFloat64(CentredFloat64):
    """CentredFloat64 for a training split that is streamed (lrexp.stream_objective): each
    evaluation one pass over this rank's rows, summed over the ranks. Memory: one row group."""

    def __init__(self, passes: Passes, products: torch.dtype, device: torch.device) -> None:
        self.sums = StreamedSums(passes, products, device)
        self.mean, self.rows = self.sums.mean, self.sums.rows

    def evaluate(self, objective: Objective, weight: Tensor, centred_bias: Tensor) -> Tensor:
        value, weight.grad, centred_bias.grad = self.sums.value_and_gradient(
            objective, weight, centred_bias
        )
        return value

    @torch.no_grad()
    def report(self, model: LogisticRegression) -> tuple[dict[str, float], Tensor]:
        """objective_report's values at the model's parameters, and the mean (or summed) loss
        of the training rows, from one pass."""
        objective = model.objective
        params = self.parameters(model)
        self.load(model, *params)
        value, grad_w, grad_b = self.sums.value_and_gradient(objective, *params)
        grad_norm = objective.subgradient_norm(params[0], grad_w, grad_b, self.rows)
        loss = value - objective.penalty(params[0], self.rows, l1=False)
        if objective.l1:
            value = value + objective.l1 * objective.share(self.rows) * params[0].abs().sum()
        values = torch.stack([value, grad_norm.double()]).tolist()
        return {"train/objective": values[0], "train/grad_norm": values[1]}, loss.float()


def training_stream(model: LogisticRegression) -> Passes | None:
    """This rank's streamed training rows (the train loader's `passes`), where streamed."""
    return getattr(getattr(model.trainer.train_dataloader, "dataset", None), "passes", None)


class LBFGS(Solver):
    name = "lbfgs"
    ignores = ("momentum", "scheduler")
    default_lr = 1.0  # the unit first step, which the line search scales

    def __init__(self, hparams: Any) -> None:
        super().__init__(hparams)
        # During a fit; lrexp.path's points (fit_rows) share one until the path ends.
        self.problem: CentredFloat64 | None = None
        self.products = torch.float32 if hparams.tol >= FLOAT32_PRODUCTS_MIN_TOL else torch.float64

    def configure(self, model: LogisticRegression) -> dict[str, Any]:
        """L-BFGS moves float64 copies of the parameters (CentredFloat64.parameters); each
        epoch's step copies them from and back to the model's."""
        optimizer = self.make_optimizer(model)
        self.say_ignored()
        return {"optimizer": optimizer}

    def make_optimizer(self, model: LogisticRegression) -> torch.optim.LBFGS:
        return torch.optim.LBFGS(
            CentredFloat64.parameters(model),
            lr=self.hp.lr,
            max_iter=self.hp.max_iter,
            tolerance_grad=self.hp.tol,
            # scipy's ftol as scikit-learn sets it (64 float64 epsilons): stop once a step
            # changes the objective by less than float64 can see.
            tolerance_change=64 * torch.finfo(torch.float64).eps,
            history_size=10,
            line_search_fn="strong_wolfe",
        )

    def on_train_end(self, model: LogisticRegression) -> None:
        self.problem = None  # the centred copy of the training split

    def skips_rest_of_epoch(self, batch_idx: int) -> bool:
        """L-BFGS takes the epoch's step on its first group."""
        return batch_idx > 0

    def training_step(self, model: LogisticRegression, group: Minibatches) -> None:
        """`max_iter` L-BFGS iterations on the whole training split (the rows the group's
        loader holds, or streams), once per epoch: the epoch's other groups are skipped."""
        stream = training_stream(model)
        if stream is not None:
            if not isinstance(self.problem, StreamedFloat64):  # the fit's first step
                self.problem = StreamedFloat64(stream, self.products, model.device)
        else:
            x, y, sample_weight = group.source.x, group.source.y, group.source.weight
            if self.problem is None or not self.problem.holds(x, y, sample_weight):
                self.problem = CentredFloat64(x, y, self.products, sample_weight)
        problem, objective = self.problem, model.objective
        self.iterate(model, model.optimizers(), problem)
        if isinstance(problem, StreamedFloat64):
            # The training rows' scores would take a pass of their own: the loss alone.
            self.report, loss = problem.report(model)
            rows, logits = problem.rows, None
            loss = loss.reshape(1)
        else:
            logits = model.logits(x)
            loss = objective.loss(logits, y, sample_weight).reshape(1)
            rows = objective.rows(y, sample_weight)
            self.report = objective_report(model, x, y, sample_weight)
        check_finite(model, loss)
        grad_norm = self.last_grad_norm = self.report["train/grad_norm"]
        if grad_norm <= self.hp.tol:  # as scikit-learn stops: later epochs would not move
            log.info(
                f"L-BFGS converged in epoch {model.current_epoch}: the largest gradient entry "
                f"{grad_norm:.2g} <= model.tol={self.hp.tol:g}; the run stops"
            )
            model.trainer.should_stop = True
            # This last epoch validates and checkpoints, whatever check_val_every_n_epoch says:
            # the run's checkpoints and scores then include the optimum.
            checkpoint_this_epoch(model.trainer)
        sizes = torch.full_like(loss, rows)
        if logits is not None and train_scores_due(model):
            model.metrics.update("train", objective.probs(logits), y, loss, sizes, sample_weight)
        else:
            model.metrics.update_loss("train", loss, sizes)

    @staticmethod
    def iterate(model: LogisticRegression, optimizer: Any, problem: CentredFloat64) -> None:
        """One epoch's `max_iter` iterations: (w, c) from the model, L-BFGS' step on the
        problem, and back. `optimizer`: torch's LBFGS or Lightning's wrapper of it."""
        torch_optimizer = getattr(optimizer, "optimizer", optimizer)
        weight, centred_bias = torch_optimizer.param_groups[0]["params"]
        problem.load(model, weight, centred_bias)
        optimizer.step(closure=lambda: problem.evaluate(model.objective, weight, centred_bias))
        problem.store(model, weight, centred_bias)

    def fit_rows(
        self,
        model: LogisticRegression,
        x: Tensor,
        y: Tensor,
        sample_weight: Tensor | None,
        epochs: int,
    ) -> dict[str, float]:
        """A fit on in-memory rows without a Trainer (lrexp.path's points): a run's epochs, each
        `iterate`, up to `epochs` or until the largest gradient entry is <= tol, as a run
        stops; a fresh L-BFGS history, as a fit's configure gives. Returns the objective's
        report at the end."""
        if self.problem is None or not self.problem.holds(x, y, sample_weight):
            self.problem = CentredFloat64(x, y, self.products, sample_weight)
        optimizer = self.make_optimizer(model)
        for _ in range(epochs):
            self.iterate(model, optimizer, self.problem)
            self.report = objective_report(model, x, y, sample_weight)
            self.last_grad_norm = self.report["train/grad_norm"]
            if self.last_grad_norm <= self.hp.tol:
                break
        check_finite(model, torch.tensor([self.report["train/objective"]]))
        return self.report


SOLVERS: dict[str, type[Solver]] = {s.name: s for s in (SGD, Adam, LBFGS)}
OPTIMIZERS = ("auto", *SOLVERS)
# model.optimizer=auto takes minibatches instead of L-BFGS once L-BFGS' copy of the training
# split (CentredFloat64) would exceed this: a fixed budget, so that the choice depends on the
# data alone, and a resumed run makes the one its checkpoint was made with.
FULL_BATCH_MAX_BYTES = 2 * 2**30


def choose_optimizer(
    hparams: Any, rows: int, features: int, world_size: int, streamed: bool = False
) -> tuple[str, str | None]:
    """model.optimizer with `auto` replaced, and why: lbfgs (full batch, stops on the gradient:
    the optimum whatever the number of classes and features) where one process fits the
    training split, or the split is streamed (any size, any number of processes: one pass
    per evaluation), and the objective is smooth; sgd (minibatches) otherwise."""
    if hparams.optimizer != "auto":
        return hparams.optimizer, None
    width = 4 if hparams.get("tol", 1e-4) >= FLOAT32_PRODUCTS_MIN_TOL else 8
    size = rows * features * width
    shown = f"{rows} x {features} training split, {size / 2**20:.0f} MiB as L-BFGS holds it"
    if hparams.get("l1_ratio") or hparams.get("weight_decay"):
        return "sgd", "model.l1_ratio / model.weight_decay need minibatch steps"
    if streamed:
        return "lbfgs", f"the {rows}-row training split is streamed: one pass per evaluation"
    if world_size > 1:
        return "sgd", f"{world_size} processes: L-BFGS runs in one"
    if size > FULL_BATCH_MAX_BYTES:
        limit = FULL_BATCH_MAX_BYTES / 2**30
        return "sgd", f"the {shown} exceeds the full-batch budget of {limit:g} GiB"
    return "lbfgs", f"the {shown} fits the full-batch budget"


def warn_unconverged(model: LogisticRegression) -> None:
    """One warning with the fix when the fit ends with the objective's largest gradient entry
    above model.tol: the weights are not the optimum the run states."""
    rows = training_rows(model)
    grad_norm = model.solver.last_grad_norm
    if grad_norm is None:
        if rows is None:  # streamed minibatches: measured when the run is scored
            return
        grad_norm = objective_report(model, *rows)["train/grad_norm"]
    tol = model.hparams.tol
    if grad_norm <= tol:
        return
    more = (
        f"each epoch is model.max_iter={model.hparams.max_iter} iterations"
        if isinstance(model.solver, LBFGS)
        else "or model.optimizer=lbfgs for the exact optimum of data that fits in memory"
    )
    log.warning(
        f"not converged: the fit ended with the objective's largest gradient entry "
        f"{grad_norm:.2g} > model.tol={tol:g}; raise trainer.max_epochs ({more})"
    )


def make_solver(hparams: Any, weight: Tensor) -> Solver:
    """The solver of model.optimizer (resolved: not auto)."""
    cls = SOLVERS[hparams.optimizer]
    return cls(hparams, weight) if issubclass(cls, MinibatchSolver) else cls(hparams)


def resolve_lr(
    lr: float | str,
    optimizer: str,
    train_x: Tensor | None,
    batch_size: int,
    num_classes: int,
    momentum: float = 0.0,
    sample_weight: Tensor | None = None,
) -> float:
    """model.lr, with `auto` replaced by the solver's own choice."""
    if lr != "auto":
        return float(lr)
    fixed = SOLVERS[optimizer].default_lr
    if fixed is not None:
        return fixed
    return sgd_auto_lr(train_x, batch_size, num_classes, momentum, sample_weight)


@torch.no_grad()
def objective_report(
    model: LogisticRegression, x: Tensor, y: Tensor, sample_weight: Tensor | None = None
) -> dict[str, float]:
    """The full regularised objective on (x, y) — the whole training split — and the largest
    entry of its (minimum-norm sub)gradient: 0 at the optimum. With lbfgs both are L-BFGS' own
    (CentredFloat64: float64, the gradient in (w, c)), so the gradient is the one it stops on."""
    objective = model.objective
    weight = model.linear.weight
    if isinstance(model.solver, LBFGS):
        problem = model.solver.problem
        if problem is None or not problem.holds(x, y, sample_weight):
            problem = CentredFloat64(x, y, model.solver.products, sample_weight)
        params = CentredFloat64.parameters(model)
        problem.load(model, *params)
        value, grad_w, grad_b = problem.value_and_gradient(objective, *params)
    else:
        value, grad_w, grad_b = objective.value_and_gradient(
            x.to(weight.dtype), y, weight, model.linear.bias, sample_weight
        )
    rows = objective.rows(y, sample_weight)
    if objective.l1:
        value = value + objective.l1 * objective.share(rows) * weight.double().abs().sum()
    grad_norm = objective.subgradient_norm(weight.to(grad_w.dtype), grad_w, grad_b, rows)
    values = torch.stack([value.double(), grad_norm.double()]).tolist()
    return {"train/objective": values[0], "train/grad_norm": values[1]}


@torch.no_grad()
def streamed_report(model: LogisticRegression, passes: Passes) -> dict[str, float]:
    """objective_report on a streamed training split (two passes: its mean, then J)."""
    products = getattr(model.solver, "products", torch.float32)
    report, _ = StreamedFloat64(passes, products, model.device).report(model)
    return report


def training_rows(
    model: LogisticRegression,
) -> tuple[Tensor, Tensor, Tensor | None] | None:
    """The training split's features, labels and sample weights as the train loader holds them
    (this device)."""
    dataset = getattr(model.trainer.train_dataloader, "dataset", None)
    x, y = getattr(dataset, "x", None), getattr(dataset, "y", None)
    return (x, y, dataset.weight) if x is not None and y is not None else None


def after_validation(model: LogisticRegression, values: dict[str, float]) -> None:
    """Reduce-on-plateau steps on each validation's val/loss."""
    if model.hparams.scheduler == "plateau" and not isinstance(model.solver, LBFGS):
        model.lr_schedulers().step(values["val/loss"])


def train_scores_due(model: LogisticRegression) -> bool:
    """Whether this epoch computes train/acc, auroc, f1 and ece: on the epochs that validate
    (so train and val curves share their points) and the last; train/loss every epoch. Never
    on a streamed split: the scores would hold every training row's probability (L-BFGS: take
    a pass of their own), which a stream must not."""
    if training_stream(model) is not None:
        return False
    trainer = model.trainer
    every = trainer.check_val_every_n_epoch or 1
    epoch = model.current_epoch + 1
    return epoch % every == 0 or epoch == trainer.max_epochs


def check_finite(model: LogisticRegression, losses: Tensor) -> None:
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
