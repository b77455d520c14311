"""senet queue: turn grid files into queued trainings (idempotent, safe to run at once)."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

from senet.commands.common import add_preset_override, add_stores

HELP = "queue every point x seed of one or more grids for `senet work`"
# The paper's numbers live with the analysis; senet core never imports analysis, so the
# queue reads the file (when the checkout has it) only to warn about a table without numbers.
PAPER_NUMBERS = Path(__file__).resolve().parents[2] / "analysis" / "paper_numbers.toml"
PAPER_FIELDS = ("top1", "top5", "gflops", "params_m")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grids", nargs="+", metavar="GRID",
                   help="grid name under experiments/ (e.g. cifar10/reduction, demo; a trailing "
                        ".toml is allowed) or a path to a grid .toml")
    add_stores(p, "MLflow tracking URI for the grid's runs "
                  "(default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--seeds", type=int, metavar="N",
                   help="use seeds 0..N-1 instead of the grid file's seeds")
    p.add_argument("--retry-failed", action="store_true",
                   help="queue again the points whose trainings failed")
    p.add_argument("--data-root", metavar="DIR",
                   help="where the workers will find CIFAR or ImageNet (give `senet work` the "
                        "same); checked now (default for CIFAR: $SENET_DATA or ./data)")
    add_preset_override(p)


def run(args: argparse.Namespace) -> int:
    import optuna

    from senet.errors import SenetError
    from senet.queue import tickets as q
    from senet.queue.storage import open_storage
    from senet.settings.grid import load_grid
    from senet.tracking import store as t
    from senet.urls import with_driver

    if args.seeds is not None and args.seeds < 1:
        raise SenetError(f"--seeds {args.seeds}: expected a number of seeds >= 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Validate every grid, and what its workers will need, before touching the queue.
    grids = [load_grid(spec, args.preset) for spec in args.grids]
    _check_distinct(grids)
    classes = {grid.name: check_data(grid, args.data_root) for grid in grids}
    claims = {grid.name: adaptive_claims(grid, args.seeds) for grid in grids}
    tracking_uri = with_driver(t.absolute_tracking_uri(t.resolve_uri(args.tracking_uri)))
    t.check_tracking(tracking_uri)
    for grid in grids:
        warning = paper_table_warning(grid)
        if warning:
            print(f"warning: {warning}")
    seeds = list(range(args.seeds)) if args.seeds is not None else None
    # One queue command at a time per storage: concurrent runs would otherwise race to
    # create the study, the experiment, the parent run and the tickets.
    with q.queue_lock(args.storage):
        storage = open_storage(args.storage)
        for grid in grids:
            _queue_one(q, t, storage, grid, seeds, tracking_uri, args.retry_failed,
                       classes[grid.name], claims[grid.name])
    _print_plan(grids, args, seeds)
    return 0


def _queue_one(q: Any, t: Any, storage: Any, grid: Any, seeds: list[int] | None,
               tracking_uri: str, retry_failed: bool, num_classes: int | None,
               claims: list[dict[str, Any]]) -> None:
    from senet.queue import adaptive

    queue, _ = q.GridQueue.open_or_create(storage, grid.name)
    # Refuse a name clash before an experiment or parent run is made for it.
    recorded = queue.attrs().get(t.A_GRID_FILE)
    if recorded and recorded != str(grid.path) and Path(recorded).is_file():
        from senet.errors import SenetError

        raise SenetError(
            f"{grid.path}: grid name {grid.name!r} is already taken in this queue by "
            f"{recorded}; declare another with name = \"...\" at the top of the file")
    # Experiment and parent run first: workers skip a grid until they exist.
    tracking = t.ensure_grid_tracking(queue, tracking_uri, str(grid.path))
    from senet.tracking.views import ensure_results_view, shows_top5, view_lines

    ensure_results_view(t.open_client(tracking_uri), tracking[t.A_EXPERIMENT_ID],
                        shows_top5(num_classes))
    result = q.queue_grid(storage, grid, seeds, retry_failed,
                          extra_slots=adaptive.kept_slots(queue, grid))
    adaptive.record(queue, grid.adaptive, claims)
    if result.added or result.retried:
        t.set_parent_status(tracking_uri, tracking[t.A_PARENT_RUN], "RUNNING")
    n_seeds = len(seeds if seeds is not None else grid.seeds)
    if result.dropped or result.new_labels:
        changes = []
        if result.dropped:
            changes.append(f"drops {', '.join(result.dropped)}")
        if result.new_labels:
            changes.append(f"adds {', '.join(result.new_labels)}")
        cancelled = f" ({result.cancelled} ticket(s) of dropped points cancelled)" \
            if result.cancelled else ""
        print(f"{grid.name}: the grid changed since it was queued: {'; '.join(changes)}"
              f"{cancelled}")
    if result.all_done and not result.retried:
        print(f"{grid.name}: all {result.slots} trainings are already done; nothing queued")
    else:
        line = (f"{grid.name}: {len(grid.points)} points x {n_seeds} seeds; "
                f"queued {result.added} new")
        if result.retried:
            line += f", {result.retried} failed ones again"
        line += f"; {result.existing} already queued, running or done"
        if result.shared:
            line += f" ({result.shared} of them by another grid: trained once)"
        if result.failed_left:
            line += f"; {result.failed_left} failed (add --retry-failed to queue them again)"
        print(line)
    if grid.adaptive is not None:
        a = grid.adaptive
        print(f"  adaptive seeds: {a.min} per point to start, one more where a claim is "
              f"undecided, up to {a.max} (alpha {a.alpha:g}); {len(claims)} claim(s) decide")
    print(f"  MLflow experiment {tracking[t.A_EXPERIMENT]!r} "
          f"(id {tracking[t.A_EXPERIMENT_ID]}), parent run {tracking[t.A_PARENT_RUN]}")
    print("\n".join(view_lines(tracking_uri, tracking[t.A_EXPERIMENT_ID])))


def _print_plan(grids: list[Any], args: argparse.Namespace, seeds: list[int] | None) -> None:
    """senet plan's one-line summary; a projection problem must not fail a done queueing."""
    from senet.errors import SenetError, one_line
    from senet.queue.plan import local_device, make_plan

    try:
        # Priced for this machine's device where the store has no runs: the demo on a
        # laptop says CPU time, not H200 time (`senet plan --device` prices others).
        plan = make_plan(grids, storage_url=args.storage, tracking_uri=args.tracking_uri,
                         seeds=seeds, device=local_device())
    except (SenetError, OSError) as exc:
        print(f"plan: not available ({one_line(exc)})")
        return
    print(f"plan: {plan.summary_line()}")


def adaptive_claims(grid: Any, seeds: int | None) -> list[dict[str, Any]]:
    """The claims that steer an adaptive grid's seeds, resolved to its points (checked
    before anything is queued); [] for a grid with a fixed list of seeds."""
    from senet.errors import SenetError

    if grid.adaptive is None:
        return []
    if seeds is not None:
        raise SenetError(f"{grid.path}: --seeds {seeds}: this grid adds seeds where its "
                         "claims are undecided (seeds = { min, max }); drop --seeds")
    from analysis.claim_points import for_grid
    from analysis.paper import load_paper_numbers
    from senet.queue.adaptive import claimed

    _, claims, _ = for_grid(grid, load_paper_numbers())
    records = [c.record() for c in claims]
    judged = [r for r in records if claimed(r) is not None]
    if not judged:
        raise SenetError(f"{grid.path}: seeds = {{ min, max }} adds seeds where a claim is "
                         "undecided, but the grid has no top-1 claim on two of its rows; add "
                         "claims = [...] or give a list of seeds")
    return judged


def _check_distinct(grids: list[Any]) -> None:
    from senet.errors import SenetError

    seen: dict[str, Path] = {}
    for grid in grids:
        other = seen.setdefault(grid.name, grid.path)
        if other != grid.path:
            raise SenetError(f"{grid.path}: grid name {grid.name!r} is also the name of "
                             f"{other}; declare another with name = \"...\" in one of them")


def check_data(grid: Any, data_root: str | None = None) -> int | None:
    """Every dataset of the grid is one its workers will find: folder trees with at least
    two classes in each split, CIFAR's release and ImageNet's train/ and val/ under
    ``data_root``. Checked now, not found out point by point at work time. Returns the
    most classes of the grid's datasets (None where one does not tell: ImageNet)."""
    from senet.data.load import check_dataset
    from senet.errors import SenetError

    classes: dict[str, int | None] = {}
    for point in grid.points:
        dataset = point.settings.get("dataset", "")
        if dataset in classes:
            continue
        try:
            classes[dataset] = check_dataset(dataset, data_root)
        except SenetError as exc:
            hint = ""
            if data_root is None and dataset == "imagenet":
                hint = " (to senet queue and to senet work)"
            elif data_root is None and dataset in ("cifar10", "cifar100"):
                hint = ("; if the workers will find it elsewhere, give senet queue and "
                        "senet work that --data-root")
            raise SenetError(f"{grid.path}: {exc}{hint}") from None
    counts = list(classes.values())
    return None if None in counts or not counts else max(counts)


def paper_table_warning(grid: Any) -> str | None:
    """A one-line warning when the grid's paper_table names no table with numbers."""
    if not grid.paper_table or not PAPER_NUMBERS.is_file():
        return None
    try:
        book = tomllib.loads(PAPER_NUMBERS.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    for table in book.get("tables", []):
        names = {table.get("key"), *table.get("aliases", [])}
        if grid.paper_table in names:
            rows = table.get("rows", [])
            if any(field in row for row in rows for field in PAPER_FIELDS):
                return None
            return (f"{grid.path}: paper_table {grid.paper_table!r} has no paper numbers in "
                    f"{PAPER_NUMBERS.name}; its table will show ours only")
    return (f"{grid.path}: paper_table {grid.paper_table!r} names no table in "
            f"{PAPER_NUMBERS.name}; its table will show ours only")
