"""The training engine: K >= 1 trainings in one epoch loop, each resumable and tracked.

``train_copies`` trains K configs that differ only by seed (and their folders, tags and
runs). K = 1 trains the plain model: that is ``senet train``, and a worker without
packing. K > 1 trains them as one packed model (``senet.engine.packed``: grouped
convolutions, one step for all). Either way each training keeps what it would have had
alone: its own seed, initial weights and data order; its own checkpoint (the plain
model's format, so either path resumes the other's); its own MLflow run and summary;
and its own failure: a copy whose loss goes non-finite, or that a search prunes, stops
alone, and the others are packed again without it.

What happens around the loop is passed in as hooks (``senet.engine.hooks``): the
checkpoint, the MLflow recorder, the epoch line, and per copy a caller's ``on_epoch``
(a search's pruner). The loop itself only trains, evaluates and hands out the numbers.
"""

from __future__ import annotations

import copy as copying
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from senet.engine.hooks import (
    FINAL_METRICS,
    CheckpointHook,
    EpochLine,
    Hook,
    RecordHook,
    check_finite,
    check_losses,
    check_same_settings,
    keep_note,
    params_of,
    summarise,
    write_failed_summary,
)
from senet.engine.step import (
    NonFiniteLoss,
    graphs_available,
    make_evaluator,
    make_graph_ready,
    make_optimizer,
    make_train_step,
)
from senet.errors import Fenced, SenetError, TrainingFailed, TrainingStopped
from senet.progress import EpochBar
from senet.settings.config import TrainConfig
from senet.settings.resolve import RunSettings, default_out, resolve_run

Outcome = dict[str, Any] | BaseException  # a summary, or why that training did not finish
EpochCallback = Callable[[int, dict[str, float]], None]

# How often (in steps) the loop reads the loss to catch a divergence early; each read is
# a device sync, and the end of every epoch checks anyway.
CHECK_EVERY = 50


@dataclass
class Copy:
    """One training of the pack: its settings, plain model, optimizer, schedule and state.

    ``owns()`` says whether this process still owns the training (a worker whose ticket
    was taken back must write nothing more); ``on_epoch`` is the caller's per-epoch call.
    """

    index: int
    cfg: TrainConfig
    out: Path
    data: Any
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any
    state: dict[str, Any] = field(default_factory=dict)
    on_epoch: EpochCallback | None = None
    owns: Callable[[], bool] = lambda: True
    recorder: Any = None
    outcome: Outcome | None = None
    counts: Any = None  # its own parameters and multiply-adds, not the pack's
    settings: RunSettings | None = None  # its own resolved settings (its model options)

    @property
    def ckpt(self) -> Path:
        return self.out / "checkpoint.pt"

    def guard(self) -> None:
        """Before any write: a training that now belongs to another worker is left alone."""
        if not self.owns():
            raise Fenced(f"{self.out}: this training was given to another worker; "
                         "this worker writes nothing more to it")


# ---------------------------------------------------------------------------
# Set-up


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SenetError(f"--device {name}: CUDA is not available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SenetError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None


def check_packable(cfgs: Sequence[TrainConfig]) -> None:
    """Refuse to train together configs that cannot share one packed model (one line):
    only the seed and the shape-keeping SE options may differ
    (``senet.engine.pack_rules``)."""
    from senet.engine.pack_rules import why_not_one_pack

    if len(cfgs) > 1 and (why := why_not_one_pack(cfgs)) is not None:
        raise SenetError(f"--pack: {why}")


def _distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return int(os.environ.get("RANK", "0")), world


def _make_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SenetError(f"--out {out}: cannot write there ({exc.strerror or exc}); "
                         "choose a writable folder") from None


def share_inductor_cache() -> None:
    """Compile once per architecture and machine: every worker of a grid (and every later
    run) shares Inductor's cache, unless the user chose a folder."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        base = Path(os.environ.get("SENET_CACHE") or "~/.cache/senet").expanduser()
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(base / "inductor")


def _check_num_classes(found: int | None, settings: RunSettings, dataset: str) -> None:
    wanted = settings.model_options.get("num_classes")
    if found is not None and wanted is not None and str(wanted) != str(found):
        raise SenetError(f"--set num_classes={wanted}: dataset {dataset} has "
                         f"{found} classes and the classifier follows the dataset; "
                         "drop num_classes")


def _check_classes(data: Any, settings: RunSettings) -> None:
    if data.num_classes < 2:
        raise SenetError(f"dataset {data.name}: {data.num_classes} class found; a classifier "
                         "needs at least 2 classes (one folder per class)")
    _check_num_classes(data.num_classes, settings, data.name)


def use_compile(cfg: TrainConfig, device: torch.device, data: Any) -> bool:
    """``torch.compile`` by default for ImageNet-size input on CUDA, where it pays for its
    compile time (1.75x for SE-ResNet-50 on an H200); never on CPU unless asked."""
    if cfg.compile is not None:
        return bool(cfg.compile)
    return device.type == "cuda" and int(getattr(data, "image_size", 32)) >= 128


def use_graphs(cfg: TrainConfig, device: torch.device, data: Any, world: int,
                compiled: bool) -> bool:
    """CUDA graphs by default where the step has static shapes: CUDA, in-memory data (full
    batches only), one process, no torch.compile (which brings its own graphs)."""
    from senet.data.tensor_data import TensorData

    return (cfg.cuda_graphs and graphs_available(device) and isinstance(data, TensorData)
            and world == 1 and not compiled)


def _data_for_seed(data: Any, cfg: TrainConfig, device: torch.device, batch: int) -> Any:
    """``data`` as seen by seed ``cfg.seed``: a view of an in-memory dataset (no second
    copy of the images), or the dataset loaded again for other kinds."""
    from senet.data.tensor_data import TensorData

    if isinstance(data, TensorData):
        view = copying.copy(data)  # shares the image tensors; only the seed differs
        view.seed = cfg.seed
        return view
    from senet.data import load_data

    return load_data(cfg.dataset, root=cfg.data_root, device=device, subset=cfg.subset,
                     seed=cfg.seed, batch_size=batch, workers=cfg.workers)


@dataclass
class Run:
    """What every copy of the pack shares: settings, device, data size and step path."""

    settings: RunSettings
    device: torch.device
    rank: int
    world: int
    steps: int
    graphs: bool
    compiled: bool
    amp_dtype: torch.dtype | None
    say: Callable[[int, str], None]
    live: list[Any] = field(default_factory=list)  # the copies of the pack now training
    compile_reported: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def path(self) -> str:
        return "cuda-graphs" if self.graphs else "compiled" if self.compiled else "eager"


def _set_up(cfgs: list[TrainConfig], log: Callable[[int, str], None] | None,
            on_epoch: Sequence[EpochCallback | None], owns: Sequence[Callable[[], bool]]
            ) -> tuple[Run, list[Copy]]:
    """Every check a user's input can fail, then the data, models and checkpoints."""
    from senet.data import load_data
    from senet.data.load import check_dataset
    from senet.engine import checkpoint
    from senet.engine.schedule import Schedule
    from senet.models import build
    from senet.models.flops import count
    from senet.tracking.store import resolve_uri

    rank, world = _distributed()
    if world > 1 and len(cfgs) > 1:
        raise SenetError("--pack: packed trainings run in one process; not under torchrun")
    check_packable(cfgs)
    first = cfgs[0]
    # The copies share every setting but their packable model options (check_packable).
    own = [resolve_run(c) for c in cfgs]
    settings = own[0]
    device = pick_device(first.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    outs = [Path(c.out) if c.out else default_out(c) for c in cfgs]
    for cfg, out in zip(cfgs, outs, strict=True):
        if (out / "checkpoint.pt").exists() and not cfg.resume:
            raise SenetError(f"{out / 'checkpoint.pt'} exists: add --resume to continue "
                             "that run, or give another --out")
        check_same_settings(out, params_of(cfg, resolve_run(cfg)), cfg.resume, None)
    # A mistyped dataset is refused before the tracking store is touched (a new store
    # would be created for nothing), and before any image is read or any folder made.
    _check_num_classes(check_dataset(first.dataset, first.data_root), settings, first.dataset)
    for cfg in cfgs:
        resolve_uri(cfg.tracking_uri)  # a malformed tracking URI is refused here, in one line

    # Under torchrun a streamed dataset reads and decodes only this rank's slice of every
    # global batch; in-memory data hands each rank the whole batch, sliced below.
    base = load_data(first.dataset, root=first.data_root, device=device, subset=first.subset,
                     seed=first.seed, batch_size=settings.batch_size, workers=first.workers,
                     rank=rank, world=world)
    _check_classes(base, settings)
    steps = base.steps_per_epoch()
    if steps < 1:
        raise SenetError(
            f"dataset {base.name}: {base.train_len} training images give no full batch of "
            f"{settings.batch_size}; lower --batch-size or raise --subset")
    # Folders only now: a command refused above (a corrupt image, a bad URI) leaves none.
    for out in outs:
        _make_out(out)
    compiled = use_compile(first, device, base)
    if compiled:
        share_inductor_cache()
    graphs = use_graphs(first, device, base, world, compiled)
    use_amp = first.amp if first.amp is not None else device.type == "cuda"
    say = log or (lambda k, msg: print(msg if len(cfgs) == 1 else f"[seed {cfgs[k].seed}] {msg}",
                                       flush=True))
    run = Run(settings, device, rank, world, steps, graphs, compiled,
              torch.bfloat16 if use_amp else None,
              say if rank == 0 else (lambda k, msg: None))

    copies = []
    for k, (cfg, out) in enumerate(zip(cfgs, outs, strict=True)):
        data = base if k == 0 else _data_for_seed(base, cfg, device, settings.batch_size)
        torch.manual_seed(cfg.seed)  # the same initial weights for the same seed
        model = build(cfg.model, **{**own[k].model_options, "num_classes": base.num_classes})
        counts = count(model, base.image_size)
        model = model.to(device, memory_format=torch.channels_last)
        # A lone copy trains its own optimizer; a pack's copies hold plain ones that the
        # packed optimizer is unpacked into for each checkpoint.
        optimizer = make_optimizer(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                   weight_decay=settings.weight_decay, nesterov=settings.nesterov,
                                   device=device, graphs=graphs and len(cfgs) == 1)
        schedule = Schedule.from_preset(settings.schedule, settings.lr, settings.epochs, steps,
                                        settings.warmup)
        c = Copy(k, cfg, out, data, model, optimizer, schedule,
                 {"epoch": 0, "history": [], "run_id": None, "wall": 0.0},
                 on_epoch=on_epoch[k], owns=owns[k], counts=counts, settings=own[k])
        if c.ckpt.exists():
            c.state = checkpoint.restore_training(c.ckpt, device, model=model,
                                                     optimizer=optimizer, schedule=schedule)
            if graphs and len(cfgs) == 1:  # load_state_dict put the checkpoint's float lr back
                make_graph_ready(optimizer, device)
        copies.append(c)
    return run, copies


# ---------------------------------------------------------------------------
# The pack: one module (the plain model, or K packed), its optimizer, step and evaluator


class Pack:
    """The live copies as one trainable module. At K = 1 it is the copy's own model and
    optimizer; at K > 1 a packed model whose state ``sync`` unpacks into the copies."""

    def __init__(self, live: list[Copy], run: Run) -> None:
        from senet.engine.packed import pack, pack_optimizer_state

        self.live = live
        self.run = run
        s = run.settings
        if len(live) == 1:
            module, optimizer = live[0].model, live[0].optimizer
        else:
            module = pack([c.model for c in live]).to(run.device,
                                                      memory_format=torch.channels_last)
            optimizer = make_optimizer(module.parameters(), lr=s.lr, momentum=s.momentum,
                                       weight_decay=s.weight_decay, nesterov=s.nesterov,
                                       device=run.device, graphs=run.graphs)
            if any(c.optimizer.state for c in live):
                pack_optimizer_state(module, optimizer, [c.optimizer.state_dict() for c in live])
        self.module, self.optimizer = module, optimizer
        if live[0].cfg.fused_se and se_blocks_of(module):
            from senet.models.fused_se import fuse_se

            fuse_se(module)  # regional compile of the SE blocks, inside the captured step
        trained: nn.Module = module
        if run.world > 1:
            trained = nn.parallel.DistributedDataParallel(module)
        if run.compiled:
            trained = torch.compile(trained)
        self.step = make_train_step(trained, optimizer, amp_dtype=run.amp_dtype,
                                    graphs=run.graphs, label_smoothing=s.label_smoothing,
                                    check_every=CHECK_EVERY)
        self.evaluate = make_evaluator(module, amp_dtype=run.amp_dtype, graphs=run.graphs,
                                       batch_size=s.batch_size if run.graphs else None)

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from senet.engine.packed import pack_inputs, pack_targets

        rank, world = self.run.rank, self.run.world
        if len(self.live) == 1:
            data = self.live[0].data
            sliced = getattr(data, "rank_sliced", False)
            for x, y in data.train_batches(epoch):
                if world > 1 and not sliced:  # the same batch everywhere: keep this slice
                    x, y = x[rank::world], y[rank::world]
                yield x, y
            return
        for parts in zip(*(c.data.train_batches(epoch) for c in self.live), strict=True):
            yield pack_inputs([p[0] for p in parts]), pack_targets([p[1] for p in parts])

    def sync(self) -> None:
        """Each copy's weights and momentum in its plain model and optimizer."""
        if len(self.live) == 1:
            return
        from senet.engine.packed import unpack, unpack_optimizer_state

        states = unpack(self.module)
        opt_states = unpack_optimizer_state(self.module, self.optimizer)
        for c, state, opt_state in zip(self.live, states, opt_states, strict=True):
            c.model.load_state_dict(state)
            c.optimizer.load_state_dict(opt_state)
            for g in c.optimizer.param_groups:  # keep the plain optimizer's float lr
                g["lr"] = float(g["lr"])


def se_blocks_of(module: nn.Module) -> bool:
    """Whether ``module`` (a plain or packed model) has SE blocks."""
    from senet.models.fused_se import is_se_block

    return any(is_se_block(m) for m in module.modules())


def train_epoch(pack: Pack, epoch: int, should_stop: Callable[[], bool] | None
                ) -> tuple[list[dict[str, float]], set[int]]:
    """One epoch through the pack's step: per copy its train loss and error, and the
    copies whose loss went non-finite. The sums stay on the device and are read once at
    the end (and every CHECK_EVERY steps for a non-finite loss)."""
    step, run = pack.step, pack.run
    schedule = pack.live[0].schedule  # every copy has the same rates (no plateau in a pack)
    progress = EpochBar(run.steps, epoch, run.settings.epochs) if len(pack.live) == 1 \
        and run.is_main else None
    dead: set[int] = set()

    def note(exc: NonFiniteLoss) -> None:
        dead.update(exc.copies)
        # Zero the dead copies' sums so later checks see only new failures.
        step.loss_sum.index_fill_(0, torch.tensor(sorted(dead), device=run.device), 0.0)

    step.begin_epoch()
    pack.module.train()
    shown = None
    for i, (x, y) in enumerate(pack.batches(epoch)):
        t0 = time.monotonic()
        try:
            step(x, y, schedule.lr(epoch, i))
        except NonFiniteLoss as exc:
            note(exc)
        if run.compiled and not run.compile_reported:
            _report_compile(run, time.monotonic() - t0)
        if should_stop and should_stop():
            if progress:
                progress.close()
            raise TrainingStopped(f"stopped at epoch {epoch} step {i + 1} on request")
        if progress and progress.enabled:
            if (i + 1) % CHECK_EVERY == 0:
                shown = float(step.last_loss[0])  # as rare as the non-finite check
            progress.update(i + 1, shown)
    if progress:
        progress.close()
    while True:
        try:
            stats = step.end_epoch()
            break
        except NonFiniteLoss as exc:
            note(exc)
    lr = schedule.lr(epoch, 0)
    return [{"train_loss": s["train_loss"], "train_top1_err": s["train_top1_err"], "lr": lr,
             "images": s["images"] * run.world} for s in stats], dead


def _report_compile(run: Run, seconds: float) -> None:
    """The first compiled step is the compile: say once what it cost and where it is kept."""
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    run.compile_reported = True
    cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR", "Inductor's default cache")
    run.say(0, f"torch.compile: the first step took {seconds:.1f}s (compiling; kept in {cache} "
               "for every later worker; --no-compile opts out)")


def evaluate(pack: Pack) -> list[dict[str, float]]:
    """Validation loss and errors of every copy over the whole validation split. Under
    torchrun each rank evaluates its slice of every batch and the sums are added over
    ranks, so every rank gets the same numbers (its plateau schedule steps on the same
    loss)."""
    data, world, rank = pack.live[0].data, pack.run.world, pack.run.rank
    if world == 1:
        return pack.evaluate(data.val_batches())
    return [evaluate_sharded(pack.evaluate, data, world, rank)]


def evaluate_sharded(evaluator: Any, data: Any, world: int, rank: int) -> dict[str, float]:
    """One plain model's validation numbers, this rank's slice of each batch, summed over
    ranks."""
    seen = [0]
    sliced = getattr(data, "rank_sliced", False)  # a streamed dataset reads its slice only

    def mine():
        for x, y in data.val_batches():
            if not sliced:
                x, y = x[rank::world], y[rank::world]
            if len(y):
                seen[0] += len(y)
                yield x, y

    device = next(evaluator.model.parameters()).device
    local = {"val_loss": 0.0, "val_top1_err": 0.0, "val_top5_err": 0.0}
    batches = mine()
    first = next(batches, None)
    if first is not None:
        local = evaluator(_chain(first, batches))[0]
    n = seen[0]
    totals = torch.tensor([local["val_loss"] * n, round(local["val_top1_err"] * n / 100),
                           round(local["val_top5_err"] * n / 100), n],
                          dtype=torch.float64, device=device)
    torch.distributed.all_reduce(totals)
    loss_sum, wrong1, wrong5, total = totals.tolist()  # once per evaluation
    if total == 0:
        raise SenetError(f"dataset {data.name}: the validation split is empty")
    return {"val_loss": loss_sum / total, "val_top1_err": 100 * wrong1 / total,
            "val_top5_err": 100 * wrong5 / total}


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


# ---------------------------------------------------------------------------
# The loop


def train_copies(
    cfgs: Sequence[TrainConfig],
    *,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[int, str], None] | None = None,
    on_epoch: Sequence[EpochCallback | None] | None = None,
    owns: Sequence[Callable[[], bool]] | None = None,
    hooks: Sequence[Hook] | None = None,
) -> list[Outcome]:
    """Train ``cfgs`` (seeds of one grid point, each with its own ``out``) in one loop.

    Returns one outcome per config, in order: its summary (also in ``out/summary.json``),
    or the exception that ended that training alone (TrainingFailed for a divergence, a
    TrainingStopped raised by its ``on_epoch``, Fenced once another worker owns it).
    Raises TrainingStopped (every copy stopped, checkpoints kept) when ``should_stop()``
    says so, SenetError for bad input before any record is made, and TrackingLost when
    the tracking store fails mid-run (the runs are left open for ``--resume``).
    """
    cfgs = list(cfgs)
    if not cfgs:
        raise SenetError("--pack: no trainings to train")
    k = len(cfgs)
    run, copies = _set_up(cfgs, log, on_epoch or [None] * k, owns or [lambda: True] * k)
    hooks = list(hooks) if hooks is not None else default_hooks(run)
    # Copies resumed at different epochs cannot share a step: one pack per start epoch.
    by_epoch: dict[int, list[Copy]] = {}
    for c in copies:
        by_epoch.setdefault(c.state["epoch"], []).append(c)
    for group in by_epoch.values():
        _train_group(group, run, hooks, should_stop)
    return [c.outcome for c in copies]


def default_hooks(run: Run) -> list[Hook]:
    """Checkpoint, then record, then print: a crash between the first two is repaired on
    resume (the run logs the epochs its checkpoint has and it lacks)."""
    if not run.is_main:
        return []
    return [CheckpointHook(), RecordHook(), EpochLine()]


def _train_group(group: list[Copy], run: Run, hooks: list[Hook],
                 should_stop: Callable[[], bool] | None) -> None:
    s = run.settings
    live = []
    for c in group:
        if _trained_to_the_end(c, s) and all(h.already_finished(c, run) for h in hooks):
            c.outcome = summarise(c, run)
        else:
            live.append(c)
    if not live:
        return
    run.live = live
    try:
        for c in live:
            for h in hooks:
                h.start(c, run, len(live))
        pack = Pack(live, run)
        # A finished training whose run was not closed has only its finishing step left.
        done = _trained_to_the_end(live[0], s)
        first_epoch = s.epochs + 1 if done else live[0].state["epoch"] + 1
        for epoch in range(first_epoch, s.epochs + 1):
            t0 = time.monotonic()
            train_stats, dead = train_epoch(pack, epoch, should_stop)
            train_time = time.monotonic() - t0
            val = evaluate(pack)
            pack.sync()
            for i, c in enumerate(pack.live):
                metrics = {**train_stats[i], **val[i]}
                metrics["img_per_s"] = metrics.pop("images") / max(train_time, 1e-9)
                try:
                    if i in dead:
                        raise TrainingFailed(
                            f"epoch {epoch}: non-finite training loss (lr "
                            f"{metrics['lr']:g}): the training diverged; {keep_note(c.ckpt)}; "
                            "lower the learning rate")
                    check_losses(metrics, f"epoch {epoch}", c.ckpt)
                    c.schedule.end_epoch(metrics["val_loss"])
                    c.state["history"].append({"epoch": epoch, **metrics})
                    c.state["epoch"] = epoch
                    c.state["wall"] += time.monotonic() - t0
                    for h in hooks:
                        h.epoch(c, run, epoch, metrics, len(pack.live))
                    if c.on_epoch is not None and run.is_main:
                        c.on_epoch(epoch, dict(metrics))
                except (TrainingFailed, TrainingStopped) as exc:
                    _end_copy(c, run, hooks, exc)
            survivors = [c for c in pack.live if c.outcome is None]
            stopping = any(c.schedule.finished for c in survivors)
            if not survivors or stopping or epoch == s.epochs:
                if stopping:
                    run.say(survivors[0].index, "validation loss plateaued after "
                            f"{survivors[0].schedule.max_drops} drops: stopping")
                break
            if len(survivors) < len(pack.live):
                pack = Pack(survivors, run)  # packed again without the stopped copies
        for c in [c for c in live if c.outcome is None]:
            _finish_copy(c, run, hooks)
    except TrainingStopped as exc:  # the whole pack was asked to stop
        for c in live:
            if c.outcome is None:
                _end_copy(c, run, hooks, exc)
        raise
    except KeyboardInterrupt as exc:
        stop = TrainingStopped(f"interrupted (Ctrl-C) after epoch "
                               f"{max(c.state['epoch'] for c in live)}")
        for c in live:
            if c.outcome is None:
                _end_copy(c, run, hooks, stop)
        raise exc
    except BaseException as exc:
        from senet.tracking.recorder import TrackingLost

        if not isinstance(exc, TrackingLost):  # a lost store cannot be told anything
            for c in live:
                if c.outcome is None:
                    _end_copy(c, run, hooks, exc)
        raise


def _trained_to_the_end(c: Copy, s: RunSettings) -> bool:
    return bool(c.state["history"]) and (c.state["epoch"] >= s.epochs or c.schedule.finished)


def _end_copy(c: Copy, run: Run, hooks: list[Hook], exc: BaseException) -> None:
    """One training ends early: failed (its summary says why) or stopped, unless another
    worker owns it now, in which case nothing of it is touched."""
    c.outcome = exc
    if isinstance(exc, Fenced) or not c.owns():
        c.outcome = exc if isinstance(exc, Fenced) else Fenced(str(exc))
        run.say(c.index, f"{c.out}: given to another worker; left as it is")
        return
    if isinstance(exc, TrainingFailed) and run.is_main:
        write_failed_summary(c, run, exc)
    for h in hooks:
        h.end(c, run, exc)
    if isinstance(exc, TrainingFailed) and run.world == 1 and run.is_main and len(run.live) > 1:
        run.say(c.index, f"FAILED: {exc}")  # a lone training's caller reports it


def _finish_copy(c: Copy, run: Run, hooks: list[Hook]) -> None:
    """A training that reached its last epoch: the final checks, then the hooks' finish;
    only then is its summary its outcome."""
    try:
        c.guard()
        summary = summarise(c, run)
        check_finite({k: summary[k] for k in FINAL_METRICS}, "the final metrics", c.ckpt)
        for h in hooks:
            h.finish(c, run, summary)
        c.outcome = summary
    except (TrainingFailed, Fenced) as exc:
        _end_copy(c, run, hooks, exc)


def run_training(
    cfg: TrainConfig,
    *,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
    on_epoch: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train one run (K = 1 of ``train_copies``). Returns the summary that is also written
    to ``out/summary.json``; raises what ended it early (TrainingFailed: the run is FAILED
    and the checkpoint of the last good epoch kept; TrainingStopped: the run is KILLED)."""
    say = (lambda k, msg: log(msg)) if log else None
    (outcome,) = train_copies([cfg], should_stop=should_stop, log=say, on_epoch=[on_epoch])
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
