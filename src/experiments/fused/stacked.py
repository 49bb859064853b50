"""Many sweep jobs trained as one stacked model: the arithmetic behind ``hydra/launcher=fused``.

Separate runs of this course's MLP each pay for a Trainer, its loop and records, and for matmuls too
small to keep a CPU's cores or a GPU busy, so jobs that share the network's shape and the data settings
train together: member ``k``'s weights are slice ``k`` of stacked tensors, every layer is one batched
matmul (``baddbmm``) for all members, and each member's activation runs on its own slice. The loss is the sum
of the members' losses, so each member's gradient is exactly its own. Members with the same optimizer
settings share a parameter group of stacked tensors; members with other settings get a group of their
own in one optimizer of the shared class: every optimizer allowed here updates element by element, so
each member's update is what its own optimizer would make. Each member sees its own seed's shuffle of
the same training split (``StackedBatches``) and starts from the weights its own run would build.

Which jobs may fuse: ``grouping.py``; how each member's run directory is written: ``members.py``.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from experiments.lit.classifier import Classifier, run_length
from experiments.lit.metrics import update


class FusedClassifier(L.LightningModule):
    """The members' classifiers as one module under Lightning's automatic optimization.

    ``members`` are built as their own runs would build them (seeded); their weights are copied into
    stacked parameters, which train. ``opt_groups``: consecutive ranges of members that share an
    optimizer parameter group (equal optimizer settings). Then each member's layers become views into the
    stacks (the same storage), so member ``k``'s own ``Classifier`` always holds its current weights, and
    after ``bind_grads`` its gradients: a separate run's callbacks and checkpoint code read it as they read
    their own run's module.
    """

    def __init__(self, members: list[Classifier], opt_groups: list[range]) -> None:
        super().__init__()
        self.members = members  # a plain list: their own parameters are not trained, the stacks are
        self.opt_groups = opt_groups
        nets = [m.net for m in members]
        self.n_layers = len(nets[0].hidden) + 1
        # one flat parameter per optimizer group, row k a member's weights and biases of every layer in
        # turn: the optimizer steps one tensor per group, and splitting it costs one gradient copy
        self.shapes = [(lin.out_features, lin.in_features) for lin in self._linears(nets[0])]
        self.sizes = [n for out, fan_in in self.shapes for n in (out * fan_in, out)]
        self.stacks = nn.ParameterList(
            [nn.Parameter(torch.stack([self._flat(nets[k]) for k in group])) for group in opt_groups]
        )
        # activations with parameters (PReLU) stay the members' own modules, trained in their member's group
        self.member_activations = nn.ModuleList([h.activation for net in nets for h in net.hidden])
        self.runs = [self._activation_runs(nets, layer) for layer in range(self.n_layers - 1)]
        self.output_activation = nets[0].output_activation
        self.loss_fn = members[0].loss_fn
        n = len(members)
        self.register_buffer("alive", torch.ones(n, dtype=torch.bool), persistent=False)
        self.frozen: dict[int, list[torch.Tensor]] = {}
        self.sums: dict[str, torch.Tensor] = {}
        self.last_losses: torch.Tensor | None = None
        self.saving: tuple[int, dict[str, Any]] | None = None  # the member whose checkpoint is being written
        self._bind()

    def on_fit_start(self) -> None:
        for member in self.members:  # the stacks moved to the training device: the views follow them
            member.to(self.device)
        self._bind()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A member's checkpoint (``member_runs.MemberView.save_checkpoint``): the trainer's own, holding member
        ``k``'s classifier instead of the stacks, so ``Classifier.load_from_checkpoint`` and eval.py read it."""
        if self.saving is not None:
            k, extra = self.saving
            member = self.members[k]
            state = {name: t.detach().cpu().clone() for name, t in member.state_dict().items()}  # not views
            checkpoint.update(state_dict=state, hyper_parameters=dict(member.hparams), **extra)

    def _member_layers(self, flats: list[torch.Tensor]) -> list[tuple[int, list[tuple[torch.Tensor, torch.Tensor]]]]:
        """Per member, in order: its row and each layer's ``(weight, bias)`` of ``flats`` (one per group)."""
        return [(i, self._layers(flat)) for flat in flats for i in range(len(flat))]

    @torch.no_grad()
    def _bind(self) -> None:
        """Member ``k``'s linear layers as views into row ``k`` of its group's stack: not trained themselves
        (the stack is), but always holding what the stack holds."""
        for member, (i, layers) in zip(self.members, self._member_layers([s.detach() for s in self.stacks])):
            for linear, (weight, bias) in zip(self._linears(member.net), layers):
                linear.weight = nn.Parameter(weight[i], requires_grad=False)
                linear.bias = nn.Parameter(bias[i], requires_grad=False)

    def bind_grads(self) -> None:
        """Each member's layers' ``.grad`` as views into its group's stacked gradient, for the gradient-norm
        monitor (Lightning's ``grad_norm`` of the member's own net)."""
        grads = [s.grad if s.grad is not None else torch.zeros_like(s) for s in self.stacks]
        for member, (i, layers) in zip(self.members, self._member_layers(grads)):
            for linear, (weight, bias) in zip(self._linears(member.net), layers):
                linear.weight.grad, linear.bias.grad = weight[i], bias[i]

    @staticmethod
    def _linears(net: nn.Module) -> list[nn.Linear]:
        return [*(h.linear for h in net.hidden), net.output]

    def _activation_runs(self, nets: list[nn.Module], layer: int) -> list[tuple[int, int, nn.Module]]:
        """Consecutive members whose activations are built from equal configs and hold no parameters share one
        call on their slice. Equal configs, not an equal ``repr``: a user's class without ``extra_repr`` shows
        no setting in its ``repr``, and members with two settings would train with the first one's."""
        configs = [m.hparams.get("activation") for m in self.members]
        runs: list[tuple[int, int, nn.Module]] = []
        for k, net in enumerate(nets):
            act = net.hidden[layer].activation
            if runs and configs[runs[-1][0]] == configs[k] and not any(True for _ in act.parameters()):
                runs[-1] = (runs[-1][0], k + 1, runs[-1][2])
            else:
                runs.append((k, k + 1, act))
        return runs

    def _flat(self, net: nn.Module) -> torch.Tensor:
        return torch.cat([t.detach().flatten() for lin in self._linears(net) for t in (lin.weight, lin.bias)])

    def _layers(self, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``flat`` (a group's stack, or its gradient) as each layer's weights ``[members, out, in]`` and
        biases ``[members, out]``: views, through ``split`` (whose backward is one concatenation)."""
        parts = flat.split(self.sizes, dim=1)
        return [(parts[2 * i].unflatten(1, shape), parts[2 * i + 1]) for i, shape in enumerate(self.shapes)]

    def stack(self, group: int, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Group ``group``'s weights and biases of layer ``layer``, for all its members (views)."""
        return self._layers(self.stacks[group])[layer]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[members, batch, in]`` (each member its own batch) or ``[batch, in]`` (one for all)."""
        shared = x.dim() == 2
        weights = [self._layers(flat) for flat in self.stacks]
        for layer in range(self.n_layers):
            inputs = (
                [x.expand(len(g), *x.shape) for g in self.opt_groups]
                if shared
                else x.split([len(g) for g in self.opt_groups])
            )
            parts = []
            for xg, layers in zip(inputs, weights):
                weight, bias = layers[layer]
                parts.append(torch.baddbmm(bias.unsqueeze(1), xg, weight.transpose(1, 2)))
            x = parts[0] if len(parts) == 1 else torch.cat(parts)
            shared = False
            if layer < self.n_layers - 1:  # split, not slices: a slice's backward fills a whole stack
                runs = self.runs[layer]
                parts = x.split([b - a for a, b, _ in runs]) if len(runs) > 1 else (x,)
                # as [rows, width]: an activation with a parameter per unit (PReLU) reads dim 1 as units
                acts = [act(part.flatten(0, 1)).view_as(part) for part, (_, _, act) in zip(parts, runs)]
                x = acts[0] if len(acts) == 1 else torch.cat(acts)
        if isinstance(self.output_activation, nn.Identity):
            return x
        return torch.stack([self.output_activation(out) for out in x.unbind()])

    def member_losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's loss, by its own loss function on its own outputs."""
        return torch.stack([self.loss_fn(o, t) for o, t in zip(out.unbind(), self._targets(out, y))])

    @staticmethod
    def _targets(out: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """Each member's labels: its own batch's (training) or the one batch all members see (validation, test)."""
        return list(y.unbind()) if y.dim() == 2 else [y] * len(out)

    def _accumulate(self, stage: str, out: torch.Tensor, y: torch.Tensor, losses: torch.Tensor) -> None:
        n = y.shape[-1]
        correct = (out.argmax(-1) == y).sum(-1)  # y: each member's own batch's, or one batch's broadcast to all
        losses = torch.where(self.alive, losses, torch.zeros_like(losses))
        if stage not in self.sums:
            self.sums[stage] = torch.zeros(3, len(self.members), device=out.device, dtype=torch.float64)
        self.sums[stage] += torch.stack(
            [losses.double() * n, correct.double(), torch.full_like(losses, n, dtype=torch.float64)]
        )

    def epoch_means(self, stage: str) -> tuple[list[float], list[float]]:
        """Per member: the loss averaged over examples and the accuracy, since the stage's last reset."""
        loss_sum, correct, count = self.sums.pop(stage).tolist()
        return ([s / c for s, c in zip(loss_sum, count)], [a / c for a, c in zip(correct, count)])

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        out = self(x)
        losses = self.member_losses(out, y)
        self.last_losses = losses.detach()
        self._accumulate("train", out.detach(), y, losses.detach())
        if self.frozen:  # a diverged member leaves the sum: its NaN would reach no other member's gradient,
            return losses[self.alive.nonzero().squeeze(1)].sum()  # but keeps Lightning's loss finite
        return losses.sum()

    def _measure(self, stage: str, out: torch.Tensor, y: torch.Tensor) -> None:
        """Each member's own measures (``Classifier.measures``) fed its own outputs: the single run's code."""
        for member, o, t in zip(self.members, out.unbind(), self._targets(out, y)):
            update(member.measures[stage].to(o.device), o, t)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        out = self(x)
        self._accumulate("val", out, y, self.member_losses(out, y))
        self._measure("val", out, y)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        out = self(x)
        self._accumulate("test", out, y, self.member_losses(out, y))
        self._measure("test", out, y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """One optimizer of the members' class; each group built by its own member's config, so it has
        exactly the defaults and checks of that member's own optimizer."""
        from experiments.nn.optimizers import build_optimizer, build_scheduler

        optimizer: torch.optim.Optimizer | None = None
        for g, group in enumerate(self.opt_groups):
            params = [self.stacks[g]]
            params += [p for k in group for p in self._activation_params(k)]
            built = build_optimizer(self.members[group.start].hparams.optimizer, params)
            if optimizer is None:
                optimizer = built
            else:
                optimizer.add_param_group(built.param_groups[0])
        assert optimizer is not None
        schedule = self.members[0].hparams.scheduler  # equal for all members
        if not schedule or not schedule.get("scheduler"):
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": build_scheduler(schedule, optimizer, *run_length(self.trainer))}

    def _slot(self, k: int) -> tuple[int, int]:
        g = next(i for i, group in enumerate(self.opt_groups) if k in group)
        return g, k - self.opt_groups[g].start

    def member(self, k: int) -> Classifier:
        """Member ``k``'s own classifier, its layers views into the stacks."""
        return self.members[k]

    @torch.no_grad()
    def freeze(self, k: int) -> None:
        """Stop member ``k`` where it is: its row is put back after every later optimizer step."""
        g, i = self._slot(k)
        self.alive[k] = False
        self.frozen[k] = [self.stacks[g][i].clone(), *(p.clone() for p in self._activation_params(k))]

    def _activation_params(self, k: int) -> list[torch.Tensor]:
        return [p for h in self.members[k].net.hidden for p in h.activation.parameters()]

    @torch.no_grad()
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for k, (row, *activation) in self.frozen.items():
            g, i = self._slot(k)
            self.stacks[g][i].copy_(row)
            for param, value in zip(self._activation_params(k), activation):
                param.copy_(value)
