"""senet plan: unique trainings, their state and projected device-hours, before queueing."""

from __future__ import annotations

import argparse
import json

from senet.commands.common import add_preset_override

HELP = "count the unique trainings of some grids and project their device-hours"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grids", nargs="+", metavar="GRID", help="grid or search names or .toml paths")
    p.add_argument("--storage", help="queue storage to count done/running/queued trainings in "
                                     "(default ./senet-queue.journal)")
    p.add_argument("--tracking-uri", help="MLflow store whose finished runs give measured "
                                          "img/s (default sqlite:///mlflow.db)")
    p.add_argument("--device", default="NVIDIA H200",
                   help="which rows of senet/throughput.toml to use when the tracking store "
                        "has no finished run of a model (default: %(default)s; 'cpu' for CPUs)")
    p.add_argument("--data-root", help="count the images of trees under this root")
    add_preset_override(p)
    p.add_argument("--json", action="store_true", help="print the same figures as JSON")


def run(args: argparse.Namespace) -> int:
    import optuna

    from senet.queue import search
    from senet.queue.plan import make_plan
    from senet.settings.grid import load_grid

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A search file is priced as its budget: trials x seeds trainings of its model.
    grids = [search.as_grid(search.load_search(spec)) if search.is_search_file(spec)
             else load_grid(spec, args.preset) for spec in args.grids]
    plan = make_plan(grids, storage_url=args.storage, tracking_uri=args.tracking_uri,
                     device=args.device, data_root=args.data_root)
    if args.json:
        print(json.dumps(plan.to_json(), indent=2))
        return 0
    print(render(plan))
    return 0


def render(plan) -> str:
    data = plan.to_json()
    head = (f"{'grid':<28} {'slots':>5} {'unique':>6} {'done':>5} {'run':>4} {'queued':>6} "
            f"{'to train':>8} {'device-h':>9}")
    lines = [head, "-" * len(head)]
    for g in data["grids"]:
        todo = g["queued"] + g["failed"] + g["new"]
        lines.append(f"{g['grid']:<28} {g['slots']:>5} {g['unique']:>6} {g['done']:>5} "
                     f"{g['running']:>4} {g['queued']:>6} {todo:>8} "
                     f"{g['device_hours_left']:>9.1f}")
    lines.append("")
    by_cost: dict[str, list[dict]] = {}
    for t in data["trainings"]:
        by_cost.setdefault(t["cost"], []).append(t)
    width = max([16, *(len(name) for name in by_cost)])
    lines.append(f"{'network':<{width}} {'unique':>6} {'epochs':>7} {'images/training':>16} "
                 f"{'img/s':>8} {'h/training':>10}  {'measured on':<12} throughput from")
    for name, ts in sorted(by_cost.items()):
        rate = data["throughput"][name]
        epochs = sorted({t["epochs"] for t in ts})
        images = sorted({t["images_per_training"] for t in ts})
        hours = sorted({t["device_hours"] for t in ts if t["device_hours"] is not None})
        lines.append(
            f"{name:<{width}} {len(ts):>6} {_span(epochs):>7} {_span(images):>16} "
            f"{rate['img_per_s'] or 0:>8.0f} {_span([round(h, 2) for h in hours]) or '?':>10}  "
            f"{rate['device'] or '—':<12} {rate['source']}")
    lines += ["", plan.summary_line()]
    overlap = sum(g["slots"] for g in data["grids"]) - data["total"]["unique"]
    if overlap > 0:
        slots = sum(g["slots"] for g in data["grids"])
        per_grid = sum(g["device_hours_left"] for g in data["grids"])
        lines.append(f"{overlap} of {slots} grid slots repeat a training of another slot "
                     f"(same resolved settings and seed) and train once; trained per grid "
                     f"they would cost ≈ {per_grid:.1f} device-hours at the same rates")
    return "\n".join(lines)


def _span(values: list) -> str:
    if not values:
        return ""
    fmt = (lambda v: f"{v:,}") if isinstance(values[0], int) else str
    return fmt(values[0]) if len(values) == 1 else f"{fmt(values[0])}–{fmt(values[-1])}"
