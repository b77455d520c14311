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
    p.add_argument("--pack", type=int, metavar="K",
                   help="cost the trainings in packs of up to K that can share one packed "
                        "model (seeds, and points that differ in squeeze, activation, gate, "
                        "bias or reduction); needs --pack-gain")
    p.add_argument("--pack-gain", type=float, metavar="G",
                   help="the assumed speed of a pack: n packed trainings run at min(n, G) "
                        "times one training's img/s (measure it: benchmarks/bench_gpu.py "
                        "--paths packed-grid)")
    add_preset_override(p)
    p.add_argument("--json", action="store_true", help="print the same figures as JSON")
    seeds = p.add_argument_group("seeds per claim (--seeds)")
    seeds.add_argument("--seeds", action="store_true",
                       help="print the seeds per row each claim of the grid needs to be "
                            "decided, fixed and adaptive, and their device-hours")
    seeds.add_argument("--alpha", type=float, default=0.05,
                       help="chance of declaring a difference where there is none "
                            "(two-sided; default %(default)s)")
    seeds.add_argument("--power", type=float, default=0.8,
                       help="chance of deciding for a claim at its effect (default %(default)s)")
    seeds.add_argument("--effect", type=float, metavar="POINTS",
                       help="the difference to plan every claim for, in error points "
                            "(default: the paper's difference of the claim's rows)")
    seeds.add_argument("--std", type=float, metavar="POINTS",
                       help="seed-to-seed standard deviation of the error (default: pooled "
                            "from finished runs in the tracking store, else per dataset)")


def run(args: argparse.Namespace) -> int:
    import optuna

    from senet.errors import SenetError
    from senet.queue import search
    from senet.queue.plan import Packing, make_plan
    from senet.settings.grid import load_grid

    packing = None
    if args.pack is not None or args.pack_gain is not None:
        if args.pack is None or args.pack < 1:
            raise SenetError("--pack K: give the largest pack, an integer >= 1")
        if args.pack_gain is None or not args.pack_gain >= 1:
            raise SenetError("--pack needs --pack-gain G >= 1: how many times one "
                             "training's img/s a full pack runs at (an assumption until "
                             "benchmarks/bench_gpu.py measures it)")
        packing = Packing(args.pack, args.pack_gain)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A search file is priced as its budget: trials x seeds trainings of its model.
    grids = [search.as_grid(search.load_search(spec)) if search.is_search_file(spec)
             else load_grid(spec, args.preset) for spec in args.grids]
    plan = make_plan(grids, storage_url=args.storage, tracking_uri=args.tracking_uri,
                     device=args.device, data_root=args.data_root, packing=packing)
    if args.seeds:  # the claims' seeds, priced at the plan's hours per training
        print(seed_plans(grids, plan, args))
        return 0
    if args.json:
        print(json.dumps(plan.to_json(), indent=2))
        return 0
    print(render(plan))
    return 0


def seed_plans(grids: list, plan, args: argparse.Namespace) -> str:
    """`--seeds`: each grid's claims, the seeds they need and what those cost."""
    from analysis.claim_points import for_grid
    from analysis.paper import load_paper_numbers
    from analysis.seed_plan import plan_grid
    from analysis.seed_plan import render as render_seeds
    from senet.errors import SenetError

    if args.json:
        raise SenetError("--seeds prints text only; drop --json")
    if not 0 < args.alpha < 0.5:
        raise SenetError(f"--alpha {args.alpha}: expected an error rate between 0 and 0.5")
    if not 0.5 <= args.power < 1:
        raise SenetError(f"--power {args.power}: expected a chance from 0.5 to below 1")
    for name in ("effect", "std"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise SenetError(f"--{name} {value}: expected error points > 0")
    book = load_paper_numbers()
    out = []
    for grid, costed in zip(grids, plan.grids, strict=True):
        # The plan's keys run seed-major: the first len(points) are one seed of each point.
        hours = {p.id: plan.hours(key)
                 for p, key in zip(grid.points, costed.keys, strict=False)}
        _, claims, notes = for_grid(grid, book)
        planned = plan_grid(grid, claims, notes, hours, args.tracking_uri, alpha=args.alpha,
                            power=args.power, effect=args.effect, std=args.std)
        out.append(render_seeds(planned))
    return "\n\n".join(out)


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
