"""The training step and evaluation without a host sync per step, eager or as CUDA graphs.

Both paths keep the epoch's sums on the device: the loss (float64, per copy) and the
top-1 error count (int64, per copy). ``TrainStep.end_epoch()`` reads them once per epoch.
The only other read is the non-finite check, once every ``check_every`` steps. Nothing in
the step itself calls ``.item()``, ``.cpu()`` or ``float()`` on a device tensor, and the
learning rate reaches the optimizer as a device tensor that is written (not read) per step.

A "copy" is one of the K models of a ``senet.engine.packed.PackedModel`` (logits (N, K, C),
labels (N, K)); a plain model is one copy (logits (N, C), labels (N,)), and every result
is a list with one entry per copy.

Paths (``make_train_step(..., graphs=...)``):

- eager: CPU and CUDA.
- CUDA graphs: the whole step (forward, backward, optimizer, the device-side sums) is
  captured once with ``torch.cuda.graph`` and replayed with the batch copied into static
  tensors. The first ``warmup_steps`` calls run eagerly on a side stream (they are real
  training steps on real batches, so no step is lost or repeated); the next call captures
  and replays. The optimizer must be ``torch.optim.SGD(..., fused=True)`` with a 1-element
  device tensor as lr (``make_optimizer`` builds it): torch 2.14's SGD has no
  ``capturable`` flag, and its foreach and single-tensor paths turn a tensor lr into a
  Python scalar (a device read, illegal while capturing), whereas the fused kernel takes
  the tensor (``aten::_fused_sgd_.tensor_lr``). Autocast runs with ``cache_enabled=False``,
  as graph capture requires.

  Manual capture is the default graph path rather than
  ``torch.compile(mode="reduce-overhead")``: it graphs the optimizer too, needs no
  compile time per training, and keeps the eager model as the reference. Which one is
  faster is for ``benchmarks/bench_gpu.py`` to measure on a GPU (paths ``graphs`` and
  ``compiled-ro``); it has not been measured yet.

Static shapes, one fixed rule:

- Training: every batch has the full batch size. The in-memory loaders already drop the
  last incomplete batch (``steps_per_epoch = train_len // batch_size``); a graphed step
  given another shape raises ``ValueError``.
- Evaluation: a graphed evaluator (and any evaluator given ``batch_size``) pads the last,
  partial batch with zeros up to the static size and masks the padding out of the sums;
  BatchNorm in eval mode treats samples independently, so the padding changes nothing
  else. An eager evaluator without ``batch_size`` runs the partial batch as it is.

After a graph is captured, the model's parameters and buffers must stay where they are:
load checkpoints with ``load_state_dict`` (copies in place) before or after capture, but
never re-create or ``.to()`` the model or the optimizer state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from senet.errors import SenetError, TrainingFailed

__all__ = [
    "NonFiniteLoss",
    "TrainStep",
    "Evaluator",
    "make_optimizer",
    "make_graph_ready",
    "make_train_step",
    "make_evaluator",
    "graphs_available",
]


class NonFiniteLoss(TrainingFailed):
    """The loss of one or more copies became NaN or infinite; ``copies`` lists them."""

    def __init__(self, message: str, copies: list[int]) -> None:
        super().__init__(message)
        self.copies = copies


def graphs_available(device: torch.device | str) -> bool:
    """Whether the CUDA-graph path can run on ``device``."""
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


def make_optimizer(
    params: Iterable[Tensor], *, lr: float, momentum: float, weight_decay: float,
    nesterov: bool, device: torch.device | str, graphs: bool,
) -> torch.optim.SGD:
    """SGD that both paths can drive; for CUDA graphs, fused with a device-tensor lr.

    ``graphs=True`` also works on CPU (fused SGD runs there), which lets CPU tests cover
    the tensor-lr update that the graph path replays.
    """
    if not graphs:
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov)
    lr_tensor = torch.tensor(lr, dtype=torch.float32, device=device)
    return torch.optim.SGD(params, lr=lr_tensor, momentum=momentum,
                           weight_decay=weight_decay, nesterov=nesterov, fused=True)


def make_graph_ready(optimizer: torch.optim.Optimizer, device: torch.device | str) -> None:
    """Give every SGD group a 1-element lr tensor on ``device`` and the fused kernel.

    ``optimizer.load_state_dict`` (a resume) puts back whatever lr the checkpoint held,
    often a float; the graphed step calls this before capture, so a resumed optimizer
    works as well as a fresh one from ``make_optimizer(..., graphs=True)``.
    """
    if not isinstance(optimizer, torch.optim.SGD):
        raise SenetError(f"CUDA graphs support the SGD optimizer, not {type(optimizer).__name__}; "
                         "use --no-cuda-graphs")
    for group in optimizer.param_groups:
        lr = group["lr"]
        if not (isinstance(lr, Tensor) and lr.device == torch.device(device)):
            value = float(lr)  # set-up time, not inside a step
            group["lr"] = torch.tensor(value, dtype=torch.float32, device=device)
        group["fused"], group["foreach"] = True, False


def _as_copies(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(N, K, C) logits and (N, K) labels, whatever the model."""
    if logits.dim() == 2:
        return logits.unsqueeze(1), y.unsqueeze(1)
    if y.dim() == 1:  # a pack of one copy
        return logits, y.unsqueeze(1)
    return logits, y


def _copy_count(model: nn.Module) -> int:
    return int(getattr(model, "copies", 1))


def _autocast(device: torch.device, amp_dtype: torch.dtype | None, graphs: bool) -> Any:
    if amp_dtype is None:
        return contextlib.nullcontext()
    # Graph capture needs the autocast cache off: cached casts would outlive the capture.
    return torch.autocast(device.type, dtype=amp_dtype, cache_enabled=not graphs)


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class TrainStep:
    """``step(x, y, lr)`` trains one step; ``begin_epoch`` / ``end_epoch`` bracket an epoch.

    ``end_epoch()`` returns, per copy, ``{"train_loss", "train_top1_err", "images"}``
    (one device read) and raises NonFiniteLoss if a loss went non-finite.
    ``last_loss`` is the last step's per-copy loss, on the device (for a progress bar:
    reading it is a sync, so read it rarely).
    """

    path = "eager"

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
        amp_dtype: torch.dtype | None = None, label_smoothing: float = 0.0,
        check_every: int = 50,
    ) -> None:
        if check_every < 1:
            raise SenetError(f"check_every {check_every!r}: expected an integer >= 1")
        self.model = model
        self.optimizer = optimizer
        self.device = _model_device(model)
        self.copies = _copy_count(model)
        self.label_smoothing = label_smoothing
        self.check_every = check_every
        self.amp_dtype = amp_dtype
        k = self.copies
        self.loss_sum = torch.zeros(k, dtype=torch.float64, device=self.device)
        self.wrong = torch.zeros(k, dtype=torch.int64, device=self.device)
        self.last_loss = torch.zeros(k, dtype=torch.float32, device=self.device)
        self.images = 0  # per copy; known on the host from the batch shapes
        self.steps = 0
        self.epoch_steps = 0

    # -- the step -------------------------------------------------------------------
    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(lr)  # a write, queued on the stream: no sync
            else:
                group["lr"] = lr

    def _core(self, x: Tensor, y: Tensor, graphs: bool) -> None:
        """Forward, backward, optimizer and the device-side sums (captured as a whole)."""
        with _autocast(self.device, self.amp_dtype, graphs):
            logits = self.model(x)
        if logits.dim() == 2:  # one model: exactly the loss train.py always used
            per_copy = F.cross_entropy(logits.float(), y,
                                       label_smoothing=self.label_smoothing).unsqueeze(0)
        else:
            from senet.engine.packed import packed_loss

            _, per_copy = packed_loss(logits, y, self.label_smoothing)
        per_copy.sum().backward()
        self.optimizer.step()
        logits3, y2 = _as_copies(logits.detach(), y)
        self.loss_sum.add_(per_copy.detach().double() * y2.shape[0])
        self.wrong.add_((logits3.argmax(-1) != y2).sum(0))
        self.last_loss.copy_(per_copy.detach())

    def _run(self, x: Tensor, y: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self._core(x, y, graphs=False)

    def __call__(self, x: Tensor, y: Tensor, lr: float) -> None:
        self._set_lr(lr)
        self._run(x, y)
        self.images += int(y.shape[0])
        self.steps += 1
        self.epoch_steps += 1
        if self.epoch_steps % self.check_every == 0:
            self._check_finite(f"step {self.epoch_steps}")

    # -- epoch bookkeeping --------------------------------------------------------------
    def begin_epoch(self) -> None:
        self.loss_sum.zero_()
        self.wrong.zero_()
        self.images = 0
        self.epoch_steps = 0

    def _check_finite(self, where: str) -> None:
        finite = torch.isfinite(self.loss_sum)
        if not bool(finite.all()):  # the one read every check_every steps
            bad = [i for i, ok in enumerate(finite.tolist()) if not ok]
            which = "" if self.copies == 1 else f" (copies {', '.join(map(str, bad))})"
            raise NonFiniteLoss(
                f"non-finite loss by {where}{which}", bad)

    def end_epoch(self) -> list[dict[str, float]]:
        self._check_finite(f"the end of the epoch (step {self.epoch_steps})")
        sums = torch.stack([self.loss_sum, self.wrong.double()]).cpu()  # the epoch's read
        n = max(self.images, 1)
        return [{"train_loss": float(sums[0, k]) / n,
                 "train_top1_err": 100.0 * float(sums[1, k]) / n,
                 "images": self.images} for k in range(self.copies)]


class GraphedTrainStep(TrainStep):
    """The same step, captured once as a CUDA graph and replayed (see the module doc)."""

    path = "cuda-graphs"

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 warmup_steps: int = 3, **kwargs: Any) -> None:
        super().__init__(model, optimizer, **kwargs)
        if self.device.type != "cuda":
            raise SenetError(f"CUDA graphs need a CUDA device, the model is on {self.device}; "
                             "use --no-cuda-graphs")
        make_graph_ready(optimizer, self.device)
        self.warmup_steps = max(1, warmup_steps)  # >= 1: momentum buffers exist at capture
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_x: Tensor | None = None
        self.static_y: Tensor | None = None
        self._side = torch.cuda.Stream(self.device)

    def _load(self, x: Tensor, y: Tensor) -> None:
        if self.static_x is None:
            self.static_x = torch.empty_like(x)
            self.static_y = torch.empty_like(y)
        elif x.shape != self.static_x.shape or y.shape != self.static_y.shape:
            raise ValueError(
                f"CUDA-graph step: batch shape {tuple(x.shape)} differs from the captured "
                f"{tuple(self.static_x.shape)}; the training loader must yield full batches only")
        self.static_x.copy_(x)
        self.static_y.copy_(y)

    def _run(self, x: Tensor, y: Tensor) -> None:
        self._load(x, y)
        if self.graph is not None:
            self.graph.replay()
            return
        main = torch.cuda.current_stream(self.device)
        if self.steps < self.warmup_steps:
            # Eager steps on a side stream, as capture requires (cuDNN/cuBLAS set-up, lazy
            # optimizer state), on the real batches: they count as training steps.
            self._side.wait_stream(main)
            with torch.cuda.stream(self._side):
                self.optimizer.zero_grad(set_to_none=True)
                self._core(self.static_x, self.static_y, graphs=True)
            main.wait_stream(self._side)
            return
        # Grads are None at capture, so backward allocates them in the graph's pool and
        # every replay rewrites them.
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._core(self.static_x, self.static_y, graphs=True)
        self.graph = graph
        graph.replay()  # capture records the work without running it


def make_train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, *, amp_dtype: torch.dtype | None = None,
    graphs: bool = False, label_smoothing: float = 0.0, check_every: int = 50,
    warmup_steps: int = 3,
) -> TrainStep:
    """The step for ``model`` (plain or packed). ``graphs=True`` needs CUDA and an optimizer
    from ``make_optimizer(..., graphs=True)``."""
    kwargs = {"amp_dtype": amp_dtype, "label_smoothing": label_smoothing,
              "check_every": check_every}
    if graphs:
        return GraphedTrainStep(model, optimizer, warmup_steps=warmup_steps, **kwargs)
    return TrainStep(model, optimizer, **kwargs)


class Evaluator:
    """``evaluator(batches)`` -> per copy ``{"val_loss", "val_top1_err", "val_top5_err"}``.

    ``batches`` yields plain (x (N, 3, H, W), y (N,)) batches; a packed model sees every
    batch with every copy. The sums stay on the device and are read once at the end.
    With ``batch_size`` set, partial batches are padded to it and masked out.
    """

    path = "eager"

    def __init__(self, model: nn.Module, *, amp_dtype: torch.dtype | None = None,
                 batch_size: int | None = None) -> None:
        self.model = model
        self.device = _model_device(model)
        self.copies = _copy_count(model)
        self.amp_dtype = amp_dtype
        self.batch_size = batch_size

    def _prepare(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.copies > 1 and x.shape[1] == 3:
            from senet.engine.packed import repeat_inputs

            x = repeat_inputs(x, self.copies)
            y = y.unsqueeze(1).expand(-1, self.copies)
        return x, y

    def _pad(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        n, size = int(x.shape[0]), self.batch_size
        if size is None:
            return x, y, None
        if n > size:
            raise ValueError(f"evaluation batch of {n} exceeds the static size {size}")
        mask = torch.arange(size, device=x.device) < n
        if n < size:
            x = torch.cat([x, x.new_zeros((size - n, *x.shape[1:]))]).contiguous(
                memory_format=torch.channels_last)
            y = torch.cat([y, y.new_zeros((size - n, *y.shape[1:]))])
        return x, y, mask

    def _sums(self, x: Tensor, y: Tensor, mask: Tensor | None, graphs: bool) -> Tensor:
        """(3, K) float64: loss sum, top-1 errors, top-5 errors of one batch."""
        with _autocast(self.device, self.amp_dtype, graphs):
            logits = self.model(x)
        logits, y = _as_copies(logits.float(), y)
        loss = F.cross_entropy(logits.permute(0, 2, 1), y, reduction="none").double()
        top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
        hit = top == y.unsqueeze(-1)
        wrong1, wrong5 = ~hit[..., 0], ~hit.any(-1)
        if mask is not None:
            keep = mask.unsqueeze(1)
            loss, wrong1, wrong5 = loss * keep, wrong1 & keep, wrong5 & keep
        return torch.stack([loss.sum(0), wrong1.sum(0).double(), wrong5.sum(0).double()])

    def _batch_sums(self, x: Tensor, y: Tensor, mask: Tensor | None) -> Tensor:
        return self._sums(x, y, mask, graphs=False)

    @torch.no_grad()
    def __call__(self, batches: Iterable[tuple[Tensor, Tensor]]) -> list[dict[str, float]]:
        was_training = self.model.training
        self.model.eval()
        total = torch.zeros(3, self.copies, dtype=torch.float64, device=self.device)
        n = 0
        try:
            for x, y in batches:
                n += int(y.shape[0])
                x, y = self._prepare(x, y)
                x, y, mask = self._pad(x, y)
                total += self._batch_sums(x, y, mask)
        finally:
            self.model.train(was_training)
        if n == 0:
            raise SenetError("evaluation: the validation split is empty")
        sums = total.cpu()  # the one read of the evaluation
        return [{"val_loss": float(sums[0, k]) / n, "val_top1_err": 100 * float(sums[1, k]) / n,
                 "val_top5_err": 100 * float(sums[2, k]) / n} for k in range(self.copies)]


class GraphedEvaluator(Evaluator):
    """Evaluation as a replayed CUDA graph of the forward pass at one static batch size."""

    path = "cuda-graphs"

    def __init__(self, model: nn.Module, *, amp_dtype: torch.dtype | None = None,
                 batch_size: int) -> None:
        super().__init__(model, amp_dtype=amp_dtype, batch_size=batch_size)
        if self.device.type != "cuda":
            raise SenetError(f"CUDA graphs need a CUDA device, the model is on {self.device}; "
                             "use --no-cuda-graphs")
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[Tensor, Tensor, Tensor] | None = None
        self.out: Tensor | None = None

    def _batch_sums(self, x: Tensor, y: Tensor, mask: Tensor | None) -> Tensor:
        assert mask is not None  # batch_size is always set here
        if self.static is None:
            self.static = (torch.empty_like(x), torch.empty_like(y), torch.empty_like(mask))
        for dst, src in zip(self.static, (x, y, mask), strict=True):
            dst.copy_(src)
        if self.graph is None:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._sums(*self.static, graphs=True)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.out = self._sums(*self.static, graphs=True)
            self.graph = graph
        self.graph.replay()
        # The caller adds this to its total before the next replay is queued on the same
        # stream, so the static output needs no copy.
        return self.out


def make_evaluator(model: nn.Module, *, amp_dtype: torch.dtype | None = None,
                   graphs: bool = False, batch_size: int | None = None) -> Evaluator:
    """The evaluator for ``model``; ``graphs=True`` needs CUDA and ``batch_size``."""
    if graphs:
        if batch_size is None:
            raise SenetError("a graphed evaluator needs batch_size (the static batch size)")
        return GraphedEvaluator(model, amp_dtype=amp_dtype, batch_size=batch_size)
    return Evaluator(model, amp_dtype=amp_dtype, batch_size=batch_size)
