"""Several seeds of one grid point trained in one process as one packed model
(``senet work --pack K``, issue 9; the packing itself is ``senet.engine.packed``).

Each seed ends up exactly where it would have been had it trained alone with
``senet.engine.train.run_training``:

- initialisation: copy k is built right after ``torch.manual_seed(seed_k)``, as
  ``run_training`` builds its model;
- data order: copy k draws its batches from its own dataset view seeded with seed_k (the
  in-memory datasets order and augment each epoch from (seed, epoch) alone);
- checkpoint: copy k's weights and momentum are unpacked into a plain model and optimizer
  and saved with ``senet.engine.checkpoint.save_training`` in its own folder, in the format
  ``run_training`` writes, so either path resumes the other's checkpoint;
- MLflow run and ``summary.json``: one per seed, with the tags the worker gives.

The copies train in lock step, so the schedule must not depend on a copy's own numbers:
the plateau schedule (whose rate follows each seed's validation loss) is refused.
Copies resumed at different epochs are trained as separate packs, one per epoch.

A copy whose loss goes non-finite fails alone (its run FAILED, its last good checkpoint
kept, a failed ``summary.json``); the others go on. Its parameters are disjoint from the
others', so its NaNs reach no other copy; at the end of that epoch the survivors are
packed again without it, so it costs no more compute.

MLflow: ``senet.tracking.store.RunTracker`` drives MLflow's fluent API, which holds one active
run per process, so the K runs here are written through ``MlflowClient`` by run id
(``CopyRun``). System metrics (a fluent-only monitor) are not recorded for packed runs.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from senet.errors import SenetError, TrainingFailed, TrainingStopped
from senet.settings.config import TrainConfig, load_preset

Outcome = dict[str, Any] | BaseException  # a summary, or why that seed did not finish

# Settings that may differ between the copies of one pack: everything else must match.
_PER_COPY_FIELDS = ("seed", "out", "tags", "run_name", "resume")


def check_same_point(cfgs: Sequence[TrainConfig]) -> None:
    """Refuse to pack configs that are not seeds of one grid point (one line)."""
    first = cfgs[0].to_dict()
    for cfg in cfgs[1:]:
        other = cfg.to_dict()
        for key in sorted(set(first) | set(other)):
            if key in _PER_COPY_FIELDS:
                continue
            if first.get(key) != other.get(key):
                raise SenetError(
                    f"--pack: the trainings differ in {key} ({first.get(key)!r} vs "
                    f"{other.get(key)!r}); pack only seeds of one grid point")
    seeds = [c.seed for c in cfgs]
    if len(set(seeds)) != len(seeds):
        raise SenetError(f"--pack: seeds {seeds} repeat; each copy needs its own seed")
    outs = [str(c.out) for c in cfgs]
    if None in (c.out for c in cfgs) or len(set(outs)) != len(outs):
        raise SenetError("--pack: every copy needs its own --out folder")


class CopyRun:
    """One seed's MLflow run, written by run id (several are open in one process)."""

    def __init__(self, uri: str | None, experiment: str) -> None:
        from senet.tracking.store import (
            absolute_tracking_uri,
            check_tracking,
            resolve_uri,
            with_driver,
        )

        self.uri = with_driver(absolute_tracking_uri(resolve_uri(uri)))
        check_tracking(self.uri)
        self.experiment = experiment
        self.run_id: str | None = None
        self._client: Any = None

    def start(self, *, run_id: str | None, tags: dict[str, str], parent_run_id: str | None,
              run_name: str | None) -> str:
        from senet.tracking.store import (
            IDENTITY_TAGS,
            RunTracker,
            get_or_create_experiment,
            open_client,
        )

        self._client = client = open_client(self.uri)
        exp_id = get_or_create_experiment(client, self.experiment)
        if run_id is None and all(k in tags for k in IDENTITY_TAGS):
            run_id = RunTracker._find_unfinished(client, exp_id, tags)
        if run_id is not None:
            client.update_run(run_id, status="RUNNING")
        else:
            all_tags = dict(tags)
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            run_id = client.create_run(exp_id, run_name=run_name, tags=all_tags).info.run_id
        self.run_id = run_id
        return run_id

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self._client.set_tag(self.run_id, key, str(value))

    def log_params(self, params: dict[str, Any]) -> None:
        existing = self._client.get_run(self.run_id).data.params
        for key, value in params.items():
            if key not in existing:  # params are immutable: a resumed run logs only new ones
                self._client.log_param(self.run_id, key, str(value))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._client.log_batch(self.run_id, metrics=[
            Metric(key, float(value), now, step or 0) for key, value in metrics.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: str) -> None:
        if self.run_id is not None:
            self._client.set_terminated(self.run_id, status=status)


@dataclass
class _Copy:
    """One seed of the pack: its settings, plain model/optimizer/schedule, run and state."""

    index: int
    cfg: TrainConfig
    out: Path
    data: Any
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any
    state: dict[str, Any] = field(default_factory=dict)
    run: CopyRun | None = None
    outcome: Outcome | None = None

    @property
    def ckpt(self) -> Path:
        return self.out / "checkpoint.pt"


def _data_for_seed(data: Any, cfg: TrainConfig, device: torch.device, batch: int) -> Any:
    """``data`` as seen by seed ``cfg.seed``: a view of an in-memory dataset (no second
    copy of the images), or the dataset loaded again for other kinds."""
    from senet.data.tensor_data import TensorData

    if isinstance(data, TensorData):
        view = copy.copy(data)  # shares the image tensors; only the seed differs
        view.seed = cfg.seed
        return view
    from senet.data import load_data

    return load_data(cfg.dataset, root=cfg.data_root, device=device, subset=cfg.subset,
                     seed=cfg.seed, batch_size=batch, workers=cfg.workers)


def run_packed(
    cfgs: Sequence[TrainConfig],
    *,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[int, str], None] | None = None,
) -> list[Outcome]:
    """Train ``cfgs`` (seeds of one grid point, each with its own ``out``) as packed models.

    Returns one outcome per config, in order: its summary (also in ``out/summary.json``),
    or the exception that ended it (TrainingFailed for a non-finite loss; other errors).
    Raises TrainingStopped (every copy stopped, checkpoints kept) when ``should_stop()``
    says so, and SenetError for bad input before any training.
    """
    from senet.data import load_data
    from senet.engine import checkpoint
    from senet.engine.schedule import Schedule
    from senet.engine.train import make_plan, pick_device
    from senet.models import build
    from senet.models.flops import count

    cfgs = list(cfgs)
    if not cfgs:
        raise SenetError("--pack: no trainings to pack")
    check_same_point(cfgs)
    say = log or (lambda k, msg: print(f"[seed {cfgs[k].seed}] {msg}", flush=True))
    plan = make_plan(cfgs[0], load_preset(cfgs[0].preset))
    if plan.schedule.get("kind") == "plateau":
        raise SenetError(
            f"--pack: preset {cfgs[0].preset} uses the plateau schedule, whose rate follows "
            "each seed's own validation loss; train its seeds without --pack")
    device = pick_device(cfgs[0].device)
    base = load_data(cfgs[0].dataset, root=cfgs[0].data_root, device=device,
                     subset=cfgs[0].subset, seed=cfgs[0].seed, batch_size=plan.batch_size,
                     workers=cfgs[0].workers)
    steps = base.steps_per_epoch()
    if steps < 1:
        raise SenetError(
            f"dataset {base.name}: {base.train_len} training images give no full batch of "
            f"{plan.batch_size}; lower --batch-size or raise --subset")

    copies: list[_Copy] = []
    for k, cfg in enumerate(cfgs):
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        if (out / "checkpoint.pt").exists() and not cfg.resume:
            raise SenetError(f"{out / 'checkpoint.pt'} exists: add --resume to continue "
                             "that run, or give another --out")
        data = base if k == 0 else _data_for_seed(base, cfg, device, plan.batch_size)
        torch.manual_seed(cfg.seed)  # the same initial weights as the seed trained alone
        model = build(cfg.model, **{**plan.model_options, "num_classes": base.num_classes})
        model = model.to(device, memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=plan.lr, momentum=plan.momentum,
                                    weight_decay=plan.weight_decay, nesterov=plan.nesterov)
        schedule = Schedule.from_preset(plan.schedule, plan.lr, plan.epochs, steps, plan.warmup)
        c = _Copy(k, cfg, out, data, model, optimizer, schedule,
                  {"epoch": 0, "history": [], "run_id": None, "wall": 0.0})
        if c.ckpt.exists():
            c.state = checkpoint.restore_training(c.ckpt, device, model=model,
                                                  optimizer=optimizer, schedule=schedule)
            say(k, f"resuming {out} after epoch {c.state['epoch']}/{plan.epochs}")
        copies.append(c)
    counts = count(copies[0].model, base.image_size)

    # Copies resumed at different epochs cannot share a step: one pack per start epoch.
    by_epoch: dict[int, list[_Copy]] = {}
    for c in copies:
        by_epoch.setdefault(c.state["epoch"], []).append(c)
    for group in by_epoch.values():
        _train_pack(group, plan, device, counts, steps, should_stop, say)
    return [c.outcome for c in copies]


def _open_runs(group: list[_Copy], device: torch.device, params_of: Callable[[_Copy], dict],
               counts: Any) -> None:
    from senet.engine.train import _run_tags

    for c in group:
        cfg = c.cfg
        run = CopyRun(cfg.tracking_uri, cfg.experiment)
        tags = {**_run_tags(cfg, device), "senet.pack_size": str(len(group))}
        c.state["run_id"] = run.start(run_id=c.state["run_id"], tags=tags,
                                      parent_run_id=cfg.parent_run_id,
                                      run_name=cfg.run_name or c.out.name)
        c.run = run
        run.set_tags(tags)
        params = params_of(c)
        run.log_params(params)
        # A run resumed after a crash may lack epochs its checkpoint has: log only those.
        logged = {m.step for m in run._client.get_metric_history(run.run_id, "val_top1_err")}
        for h in c.state["history"]:
            if h["epoch"] not in logged:
                run.log_metrics({k: v for k, v in h.items() if k != "epoch"}, step=h["epoch"])
        (c.out / "config.json").write_text(json.dumps(
            {"config": cfg.to_dict(), "resolved": params, "gmacs": counts.gmacs,
             "params": counts.params, "packed_with": len(group)}, indent=2, default=str))


def _close(c: _Copy, status: str, reason: str | None = None) -> None:
    from senet.tracking.store import TAG_FAIL_REASON, TAG_STOP_REASON

    if c.run is None:
        return
    try:
        if reason:
            c.run.set_tags({TAG_STOP_REASON if status == "KILLED" else TAG_FAIL_REASON:
                            reason[:500]})
        c.run.finish(status)
    finally:
        c.run = None


def _unpack_into(packed: nn.Module, optimizer: torch.optim.Optimizer,
                 group: list[_Copy]) -> None:
    """Each live copy's weights and momentum, back in its plain model and optimizer."""
    from senet.engine.packed import unpack, unpack_optimizer_state

    states = unpack(packed)
    opt_states = unpack_optimizer_state(packed, optimizer)
    for c, state, opt_state in zip(group, states, opt_states, strict=True):
        c.model.load_state_dict(state)
        c.optimizer.load_state_dict(opt_state)
        for g in c.optimizer.param_groups:  # keep the plain optimizer's float lr
            g["lr"] = float(g["lr"])


def _make_pack(live: list[_Copy], device: torch.device, plan: Any, graphs: bool) -> tuple:
    from senet.engine.packed import pack, pack_optimizer_state
    from senet.engine.step import make_optimizer

    packed = pack([c.model for c in live]).to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(packed.parameters(), lr=plan.lr, momentum=plan.momentum,
                               weight_decay=plan.weight_decay, nesterov=plan.nesterov,
                               device=device, graphs=graphs)
    if any(c.optimizer.state for c in live):
        pack_optimizer_state(packed, optimizer, [c.optimizer.state_dict() for c in live])
    return packed, optimizer


def _train_pack(group: list[_Copy], plan: Any, device: torch.device, counts: Any, steps: int,
                should_stop: Callable[[], bool] | None, say: Callable[[int, str], None]) -> None:
    from senet.engine import checkpoint
    from senet.engine.packed import pack_inputs, pack_targets
    from senet.engine.step import NonFiniteLoss, make_evaluator, make_train_step
    from senet.engine.train import _params, _summarise, _write_failed_summary

    cfg0 = group[0].cfg
    use_amp = cfg0.amp if cfg0.amp is not None else device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp else None
    in_memory = hasattr(group[0].data, "epoch_plan")
    graphs = (device.type == "cuda" and in_memory and getattr(cfg0, "cuda_graphs", True)
              and not cfg0.compile)
    live = [c for c in group if c.state["epoch"] < plan.epochs]
    for c in group:
        if c not in live:  # already trained to the end: only the summary is missing
            c.outcome = _summarise(c.state, counts, c.cfg, plan)
    if not live:
        return
    try:
        _open_runs(live, device, lambda c: {**_params(c.cfg, plan, use_amp, 1, c.model, graphs),
                                            "pack_size": len(live), "path": "packed"}, counts)
        for c in live:
            say(c.index, f"{c.cfg.model} on {c.data.name}: packed with {len(live) - 1} other "
                         f"seed(s), {plan.epochs} epochs of {steps} steps, device {device}, "
                         f"run {c.state['run_id']}")
        packed, optimizer = _make_pack(live, device, plan, graphs)
        step = make_train_step(packed, optimizer, amp_dtype=amp_dtype, graphs=graphs,
                               label_smoothing=plan.label_smoothing)
        evaluate = make_evaluator(packed, amp_dtype=amp_dtype, graphs=graphs,
                                  batch_size=plan.batch_size if graphs else None)
        schedule = live[0].schedule  # the same rates for every copy (no plateau)
        for epoch in range(live[0].state["epoch"] + 1, plan.epochs + 1):
            t0 = time.monotonic()
            dead: set[int] = set()

            def note(exc: NonFiniteLoss, dead: set[int] = dead, step: Any = step) -> None:
                dead.update(exc.copies)
                # Zero the dead copies' sums so later checks see only new failures.
                step.loss_sum.index_fill_(0, torch.tensor(sorted(dead), device=device), 0.0)

            step.begin_epoch()
            packed.train()
            iters = [c.data.train_batches(epoch) for c in live]
            for i, batches in enumerate(zip(*iters, strict=True)):
                x = pack_inputs([b[0] for b in batches])
                y = pack_targets([b[1] for b in batches])
                try:
                    step(x, y, schedule.lr(epoch, i))
                except NonFiniteLoss as exc:
                    note(exc)
                if should_stop and should_stop():
                    raise TrainingStopped(f"stopped at epoch {epoch} step {i + 1} on request")
            while True:
                try:
                    train_stats = step.end_epoch()
                    break
                except NonFiniteLoss as exc:
                    note(exc)
            train_time = time.monotonic() - t0
            val = evaluate(live[0].data.val_batches())
            survivors = [c for k, c in enumerate(live) if k not in dead]
            _unpack_into(packed, optimizer, live)  # dead copies' state is discarded below
            for k, c in enumerate(live):
                if k in dead:
                    exc = TrainingFailed(
                        f"non-finite loss in epoch {epoch} (packed copy {k}); the last good "
                        "checkpoint is kept; lower the learning rate and resume")
                    _write_failed_summary(c.out, c.state, exc, counts, c.cfg, plan)
                    _close(c, "FAILED", str(exc))
                    c.outcome = exc
                    say(c.index, f"FAILED: {exc}")
                    continue
                images = train_stats[k].pop("images")
                # This training's own images per second, as run_training logs it; the
                # pack as a whole does len(live) times as many.
                metrics = {**train_stats[k], **val[k], "lr": schedule.lr(epoch, 0),
                           "img_per_s": images / max(train_time, 1e-9)}
                c.state["history"].append({"epoch": epoch, **metrics})
                c.state["epoch"] = epoch
                c.state["wall"] += time.monotonic() - t0
                c.schedule.load_state_dict(schedule.state_dict())
                checkpoint.save_training(c.ckpt, model=c.model, optimizer=c.optimizer,
                                         schedule=c.schedule, state=c.state)
                c.run.log_metrics(metrics, step=epoch)
                say(c.index, f"epoch {epoch}/{plan.epochs}  loss {metrics['train_loss']:.4f}  "
                             f"val err {metrics['val_top1_err']:.2f}%  "
                             f"{metrics['img_per_s'] * len(live):.0f} img/s (pack of {len(live)})")
            if not survivors:
                return
            if len(survivors) < len(live) and epoch < plan.epochs:
                live = survivors  # pack again without the failed copies
                packed, optimizer = _make_pack(live, device, plan, graphs)
                step = make_train_step(packed, optimizer, amp_dtype=amp_dtype, graphs=graphs,
                                       label_smoothing=plan.label_smoothing)
                evaluate = make_evaluator(packed, amp_dtype=amp_dtype, graphs=graphs,
                                          batch_size=plan.batch_size if graphs else None)
            else:
                live = survivors
    except TrainingStopped as exc:
        for c in live:
            _close(c, "KILLED", str(exc))
        raise
    except BaseException as exc:
        for c in live:
            _close(c, "FAILED", f"{type(exc).__name__}: {exc}")
        raise
    for c in live:
        c.outcome = summary = _summarise(c.state, counts, c.cfg, plan)
        _finish(c, summary)


def _finish(c: _Copy, summary: dict[str, Any]) -> None:
    """Final metrics, weights, excitation statistics and summary, as ``run_training``
    logs them; then the run is closed FINISHED."""
    from senet.excitation.probe import excitation_stats
    from senet.models import se_blocks

    run = c.run
    try:
        run.log_metrics({k: float(summary[k]) for k in (
            "final_val_top1_err", "final_val_top5_err", "best_val_top1_err",
            "best_val_top5_err", "params", "gmacs", "wall_time_s")})
        weights = c.out / "weights.pt"
        torch.save(c.model.state_dict(), weights)
        run.log_artifact(weights, "model")
        run.log_artifact(c.out / "config.json")
        if se_blocks(c.model):
            from senet.excitation.stats import ARTIFACT_PATH

            stats = excitation_stats(c.model, c.data.val_batches(), c.data.class_names)
            path = stats.save(c.out / Path(ARTIFACT_PATH).name)
            run.log_artifact(path, str(Path(ARTIFACT_PATH).parent))
        (c.out / "summary.json").write_text(json.dumps(summary, indent=2))
        run.log_artifact(c.out / "summary.json")
    except BaseException as exc:
        _close(c, "FAILED", f"{type(exc).__name__}: {exc}")
        c.outcome = exc if isinstance(exc, Exception) else c.outcome
        if not isinstance(exc, Exception):
            raise
        return
    _close(c, "FINISHED")



# ---------------------------------------------------------------------------
# The worker's side: claim seeds of one point, train them packed, report each ticket


def packable(cfg: TrainConfig) -> str | None:
    """Why ``cfg``'s point cannot be packed, or None."""
    from senet.engine.train import make_plan

    if make_plan(cfg, load_preset(cfg.preset)).schedule.get("kind") == "plateau":
        return "its preset uses the plateau schedule (the rate follows each seed's own loss)"
    return None


def claim_same_point(worker: Any, queue: Any, first: Any, k: int) -> list[Any]:
    """``first`` (claimed) plus up to ``k - 1`` more WAITING tickets of the same point
    and settings with other seeds, each claimed and settled as the worker's own claim."""
    tickets = [first]
    for ticket in queue.waiting():
        if len(tickets) >= k:
            break
        if (ticket.point != first.point or ticket.settings != first.settings
                or ticket.seed in {t.seed for t in tickets}):
            continue
        if not queue.try_claim(ticket):
            continue
        reason = queue.settle(ticket, worker.cfg.grace_s)
        if reason is None:
            tickets.append(ticket)
        else:
            queue.close(ticket, reason)
            worker.say(f"{queue.name}: ticket #{ticket.number} closed: {reason}")
    return tickets


def train_tickets(worker: Any, queue: Any, first: Any, heartbeat: Callable[..., Any],
                  attempt_log: Callable[[Path, dict[str, Any]], None]) -> int:
    """Train ``first`` and up to ``worker.cfg.pack - 1`` other seeds of its point as one
    packed model; complete or fail each ticket on its own. Returns the tickets worked on.

    ``heartbeat`` and ``attempt_log`` are the worker's own (``senet.worker.loop.Heartbeat``,
    ``_attempt_log``), passed in so that this module does not import the worker back.
    """
    import contextlib

    attrs = queue.attrs()
    why = packable(worker.train_config(queue, first, attrs))
    if why is not None:
        worker.say(f"{queue.name}: {first.label!r} trains alone: {why}")
        worker._train(queue, first)
        return 1
    tickets = claim_same_point(worker, queue, first, worker.cfg.pack)
    if len(tickets) == 1:
        worker._train(queue, first)
        return 1
    cfgs = [worker.train_config(queue, t, attrs) for t in tickets]
    seeds = ", ".join(str(t.seed) for t in tickets)
    worker.say(f"{queue.name}: training {first.label!r} seeds {seeds} packed (tickets "
               f"{', '.join('#' + str(t.number) for t in tickets)})")
    for t, cfg in zip(tickets, cfgs, strict=True):
        attempt_log(Path(cfg.out), {"event": "start", "ticket": t.number, "packed": seeds,
                                     "checkpoint": (Path(cfg.out) / "checkpoint.pt").exists()})
    started = time.time()
    beats = [heartbeat(queue, t.trial_id, worker.cfg.heartbeat_s) for t in tickets]
    with contextlib.ExitStack() as stack:
        for beat in beats:
            stack.enter_context(beat)
        try:
            outcomes: list[Outcome] = run_packed(
                cfgs,
                should_stop=lambda: worker.stop_requested or any(b.lost for b in beats),
                log=lambda k, msg: print(f"[{queue.name} {tickets[k].label} "
                                         f"s{tickets[k].seed}] {msg}", flush=True),
            )
        except KeyboardInterrupt:
            for t, cfg in zip(tickets, cfgs, strict=True):
                worker._give_back(queue, t, "interrupted (Ctrl-C)")
                attempt_log(Path(cfg.out), {"event": "end", "ticket": t.number,
                                             "outcome": "interrupted"})
            raise
        except Exception as exc:  # noqa: BLE001 - the whole pack failed: each ticket fails
            outcomes = [exc] * len(tickets)
    seconds = time.time() - started
    for t, cfg, beat, outcome in zip(tickets, cfgs, beats, outcomes, strict=True):
        result: dict[str, Any]
        try:
            if isinstance(outcome, dict):
                result = worker._report(queue, t, outcome, seconds)
            elif (isinstance(outcome, TrainingStopped) and not beat.lost
                  and not worker.stop_requested):
                # Another seed of the pack was taken back: this one is fine, so it goes
                # back to the queue and resumes from its checkpoint.
                worker._give_back(queue, t, "stopped with its pack (another seed was lost)")
                result = {"outcome": "interrupted"}
            else:
                raise outcome if isinstance(outcome, BaseException) else SenetError(
                    "packed training returned nothing for this seed")
        except Exception as exc:  # noqa: BLE001 - one seed's failure is that ticket's only
            result = worker._failed(queue, t, exc, beat.lost, cfg, attrs)
        attempt_log(Path(cfg.out), {"event": "end", "ticket": t.number, **result})
    worker._close_parent_if_drained(queue, attrs)
    return len(tickets)
