"""``histoquery evaluate``: accuracy of same/different decisions on labeled pairs; ``--calibrate`` chooses and
stores the threshold instead.

Pairs come from a CSV (``--pairs``: image_a,image_b,same), are generated from a stored labeled dataset
(``--labeled NAME``) or from a labeled folder embedded on the fly (``--labeled-folder DIR``: DIR/<label>/<image>).
Calibrate on one pair set, evaluate on another: evaluation never re-tunes the stored threshold, and evaluating on
the images (or groups) the threshold was calibrated on is refused unless ``--in-sample`` (then the report's first
line says so). ``--labeled NAME --split group`` does both in one command: it splits the dataset's groups (patient /
case / slide) in two (seeded), calibrates on one part and reports on the other. Pairs generated from a dataset
never join two images of one group when the dataset has groups (``--allow-same-group`` turns that off).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.flags import renamed_flag


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate (or --calibrate) pair decisions on labeled pairs",
                              description=__doc__)  # fmt: skip
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", type=Path, default=None, metavar="CSV", help="labeled pairs CSV")
    src.add_argument("--labeled", default=None, metavar="DATASET", help="generate pairs from a stored dataset")
    src.add_argument("--labeled-folder", type=Path, default=None, metavar="DIR", help="DIR/<label>/<image files>")
    p.add_argument("--calibrate", action="store_true", help="choose the threshold here and store it")
    p.add_argument("--method", choices=("accuracy", "youden"), default="accuracy", help="calibration criterion")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, default=None, metavar="COS", help="evaluate at this cosine threshold")
    g.add_argument("--threshold-d", type=float, default=None, metavar="D", help="... or this distance d = 2 - 2cos")
    p.add_argument("--n-pairs", type=int, default=2000, help="generated pairs (balanced; default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pair generation and bootstrap")
    p.add_argument(
        "--split",
        choices=("group",),
        default=None,
        help="with --labeled: calibrate on part of the groups, evaluate on the rest (one command)",
    )
    p.add_argument(
        "--calibration-fraction",
        type=float,
        default=0.5,
        metavar="F",
        help="with --split group: share of the groups used to calibrate (default 0.5)",
    )
    p.add_argument(
        "--in-sample",
        action="store_true",
        help="allow evaluating on the images the threshold was calibrated on (report marked in-sample)",
    )
    grp = p.add_mutually_exclusive_group()
    grp.add_argument(
        "--exclude-same-group",
        action="store_true",
        help="force group-disjoint pairs and top-k (the default whenever the dataset has groups)",
    )
    renamed_flag(grp, "--never-same-slide", "--exclude-same-group")  # the flag's old name
    grp.add_argument(
        "--allow-same-group",
        action="store_true",
        help="let generated pairs and top-k join two images of one group (inflates the numbers)",
    )
    p.add_argument("--pair-set", default=None, metavar="NAME", help="name to store the pair set under")
    p.add_argument("--encoder", default=None, metavar="VERSION", help="encoder version (default: the active one)")
    p.add_argument("--json-out", type=Path, default=None, metavar="FILE", help="write the full report as JSON")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from retrieval.api import Retrieval
    from retrieval.errors import EvaluationError
    from retrieval.evaluation import (
        calibrate,
        evaluate,
        score_dataset,
        score_dataset_split,
        score_folder,
        score_pairs_file,
    )
    from retrieval.jsonable import dumps
    from retrieval.pairs_io import read_pairs_csv
    from retrieval.settings import get_settings

    if (args.calibrate or args.split) and (args.threshold is not None or args.threshold_d is not None):
        raise EvaluationError("--calibrate / --split choose the threshold themselves: drop --threshold / --threshold-d")
    if args.split and args.labeled is None:
        raise EvaluationError("--split group splits a stored dataset's groups: use it with --labeled DATASET")
    exclude_same = True if args.exclude_same_group else (False if args.allow_same_group else None)
    with Retrieval.from_settings(get_settings(), encoder_name=args.encoder) as r:
        if args.split:
            cal, held = score_dataset_split(r, args.labeled, n_pairs=args.n_pairs, seed=args.seed,
                                            fraction=args.calibration_fraction)  # fmt: skip
            cal_report = calibrate(r, cal, method=args.method,
                                   pair_set_name=f"{args.pair_set}-calibration" if args.pair_set else None)  # fmt: skip
            report = evaluate(r, held, pair_set_name=args.pair_set, in_sample=args.in_sample)
            cal_report["skipped"], report["skipped"] = cal.skipped, held.skipped
            report["calibration"] = cal_report
        else:
            if args.pairs is not None:
                scored = score_pairs_file(r, read_pairs_csv(args.pairs, require_labels=True))
            elif args.labeled is not None:
                scored = score_dataset(r, args.labeled, n_pairs=args.n_pairs, seed=args.seed,
                                       exclude_same_group=exclude_same)  # fmt: skip
            else:
                scored = score_folder(r, args.labeled_folder, n_pairs=args.n_pairs, seed=args.seed)
            if args.calibrate:
                report = calibrate(r, scored, method=args.method, pair_set_name=args.pair_set)
            else:
                report = evaluate(r, scored, threshold=args.threshold, threshold_d=args.threshold_d,
                                  pair_set_name=args.pair_set, in_sample=args.in_sample)  # fmt: skip
            report["skipped"] = scored.skipped
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(dumps(report) + "\n")
    print(dumps(report) if args.json else render(report))
    if args.json_out is not None and not args.json:
        print(f"report written to {args.json_out}")
    return 0


def render(report: dict[str, Any]) -> str:
    """The report as text: an in-sample mark first, summary, groups and seed, the sweep table, thresholds, top-k
    metrics, then the calibration side of a ``--split`` run."""
    from cli.tables import fmt, table

    lines = []
    if report.get("in_sample"):
        lines.append(f"IN-SAMPLE: evaluated on data the threshold was calibrated on ({report['in_sample']}); "
                     "this accuracy is optimistic")  # fmt: skip
    for warning in report.get("warnings", []):
        lines.append(f"WARNING: {warning}")
    lines += [
        f"{report['kind']} of encoder {report['encoder_version']} on {report['source']}: {report['n_pairs']} pairs "
        f"({report['n_same']} same), {report['n_skipped']} skipped",
    ]
    split = report.get("split")
    if split:
        lines.append(
            f"{split['side']} side of a split by group (seed {split['seed']}): calibration "
            f"{split['calibration_groups']} groups ({split['calibration_images']} images), held out "
            f"{split['held_out_groups']} groups ({split['held_out_images']} images); no group on both sides"
        )
    if "groups" in report:
        disjoint = "group-disjoint" if report.get("group_disjoint") else "NOT group-disjoint"
        lines.append(
            f"{report.get('images', '?')} images in {report['groups']} groups; pairs {disjoint}; seed "
            f"{report.get('seed')}; {report.get('n_pairs_requested')} pairs asked for"
        )
    lo, hi = report["accuracy_ci95"]
    src = "chosen here" if report["kind"] == "calibrate" else report.get("threshold_source", "")
    lines.append(
        f"threshold cos={fmt(report['threshold_cos'])} (d={fmt(report['threshold_d'])}, {src}): "
        f"accuracy {fmt(report['accuracy'])} [95% CI {fmt(lo)}-{fmt(hi)}], TPR {fmt(report['tpr'])}, "
        f"FPR {fmt(report['fpr'])}"
    )
    if "roc_auc" in report:
        lines.append(
            f"ROC AUC {fmt(report['roc_auc'])}, EER {fmt(report['eer'])} at cos={fmt(report['eer_threshold_cos'])}"
        )
        lines.append(
            f"best-accuracy threshold cos={fmt(report['best_accuracy_threshold_cos'])} "
            f"(accuracy {fmt(report['best_accuracy'])}), Youden threshold cos={fmt(report['youden_threshold_cos'])}"
            + ("" if report["kind"] == "calibrate" else "  [reported only: evaluation does not re-tune]")
        )
    lines.append("")
    lines.append(table(["d", "cos", "accuracy", "TPR", "FPR"],
                       [[r["threshold_d"], r["threshold_cos"], r["accuracy"], r["tpr"], r["fpr"]]
                        for r in report["sweep"]]))  # fmt: skip
    if "topk" in report:
        t = report["topk"]
        lines.append("")
        lines.append(
            f"top-k ({int(t['n_queries'])} queries): precision@1 {fmt(t['precision_at_1'])}, "
            f"precision@5 {fmt(t['precision_at_5'])}, precision@10 {fmt(t['precision_at_10'])}, "
            f"majority-vote@5 accuracy {fmt(t['majority_vote_at_5'])}"
        )
    if report.get("topk_scope"):
        lines.append(f"top-k scope: {report['topk_scope']}")
    if report.get("warning"):
        lines.append(f"warning: {report['warning']}")
    for msg in report.get("skipped", [])[:10]:
        lines.append(f"skipped {msg}")
    if isinstance(report.get("calibration"), dict):
        lines += ["", "--- calibration side ---", render(report["calibration"])]
    return "\n".join(lines)
