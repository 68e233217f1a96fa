"""``histoquery query``: pair decisions and top-k neighbours from the command line.

  histoquery query pair A B [--threshold COS | --threshold-d D]
  histoquery query topk IMG -k 10 [--dataset NAME] [--label L] [--slide ID] [--exclude-same-group]
  histoquery query pairs pairs.csv -o decisions.csv

A and B (and IMG) are stored image ids (digits) or image files (embedded on the fly with the active encoder).
Tables by default, ``--json`` for programs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.flags import renamed_flag


def _thresholds(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, default=None, metavar="COS", help="cosine threshold in [-1, 1]")
    g.add_argument("--threshold-d", type=float, default=None, metavar="D",
                   help="distance threshold d = 2 - 2cos in [0, 4] (the study used 0.705)")  # fmt: skip


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("query", help="pair decisions and top-k neighbours", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--encoder", default=None, metavar="VERSION", help="encoder version (default: the active one)")
    sub = p.add_subparsers(dest="query_command", metavar="KIND", required=True)

    pp = sub.add_parser("pair", help="are A and B the same category?")
    pp.add_argument("a", help="image id or image file")
    pp.add_argument("b", help="image id or image file")
    _thresholds(pp)
    pp.add_argument("--json", action="store_true", help="print JSON")
    pp.set_defaults(handler=run_pair)

    pt = sub.add_parser("topk", help="the k most similar stored images")
    pt.add_argument("image", help="image id or image file")
    pt.add_argument("-k", type=int, default=10, help="number of neighbours (default 10)")
    pt.add_argument("--dataset", default=None, help="only this dataset")
    pt.add_argument("--label", default=None, help="only this label")
    pt.add_argument("--slide", type=int, default=None, help="only tiles of this slide id")
    pt.add_argument(
        "--exclude-same-group",
        action="store_true",
        help="no images of the query's group (patient / case / source image; a tile's group is its slide unless "
        "--groups, --group-from or a manifest gave it one)",
    )
    renamed_flag(pt, "--exclude-same-slide", "--exclude-same-group")  # the old name, before groups were first-class
    pt.add_argument("--include-self", action="store_true", help="let a stored query image appear in its results")
    pt.add_argument("--group-by-slide", action="store_true", help="group the table by slide")
    pt.add_argument("--json", action="store_true", help="print JSON")
    pt.set_defaults(handler=run_topk)

    pc = sub.add_parser("pairs", help="a CSV of pairs in, a CSV of decisions out")
    pc.add_argument("csv", type=Path, help="CSV with columns image_a,image_b[,same]")
    pc.add_argument("-o", "--output", type=Path, required=True, help="decisions CSV to write")
    _thresholds(pc)
    pc.add_argument("--json", action="store_true", help="print a JSON summary")
    pc.set_defaults(handler=run_pairs)


def _open(args: argparse.Namespace) -> Any:
    from retrieval.api import Retrieval
    from retrieval.settings import get_settings

    return Retrieval.from_settings(get_settings(), encoder_name=args.encoder)


def run_pair(args: argparse.Namespace) -> int:
    from cli.tables import table
    from retrieval.jsonable import dumps
    from retrieval.resolve import parse_query

    with _open(args) as r:
        res = r.pair(parse_query(args.a), parse_query(args.b), threshold=args.threshold, threshold_d=args.threshold_d)
        version = r.version.name
    if args.json:
        print(dumps({**res.as_dict(), "encoder_version": version}))
        return 0
    print(table(["a", "b", "cos", "d", "decision", "threshold cos", "threshold d", "threshold from"],
                [[res.a, res.b, res.cos, res.d, "SAME" if res.same else "different", res.threshold_cos,
                  res.threshold_d, res.threshold_source]]))  # fmt: skip
    print(f"encoder version: {version}")
    return 0


def run_topk(args: argparse.Namespace) -> int:
    from cli.tables import table
    from retrieval.api import group_by_slide
    from retrieval.jsonable import dumps
    from retrieval.resolve import parse_query
    from retrieval.store.base import SearchFilter

    flt = SearchFilter(dataset=args.dataset, label=args.label, slide_id=args.slide)
    with _open(args) as r:
        found = r.top_k(parse_query(args.image), k=args.k, filter=flt, exclude_same_group=args.exclude_same_group,
                        exclude_self=not args.include_self)  # fmt: skip
        version = r.version.name
    if args.json:
        print(dumps({"query": args.image, "encoder_version": version, "results": [n.as_dict() for n in found]}))
        return 0
    headers = ["rank", "image id", "cos", "d", "label", "dataset", "slide", "source"]

    def row(n: Any) -> list[Any]:
        where = n.source_path if n.x is None else f"{n.source_path} @L{n.level} ({n.x},{n.y}) {n.tile_size}px"
        return [n.rank, n.image_id, n.score, n.d, n.label, n.dataset, n.slide_id, where]

    if args.group_by_slide:
        for slide, group in group_by_slide(found).items():
            print(f"\nslide {slide if slide is not None else '(not a slide tile)'}: {len(group)} result(s)")
            print(table(headers, [row(n) for n in group]))
    else:
        print(table(headers, [row(n) for n in found]))
    if not found:
        print("no results (the filter excluded every stored image)")
    print(f"encoder version: {version}")
    return 0


def run_pairs(args: argparse.Namespace) -> int:
    import sys

    from cli.tables import printable
    from retrieval.jsonable import dumps
    from retrieval.pairs_io import answer_pairs, check_output_file, read_pairs_csv, write_decisions_csv

    check_output_file(args.output)  # before any work: a folder or an unwritable place is said at once
    pairs = read_pairs_csv(args.csv)
    with _open(args) as r:
        results = answer_pairs(r, pairs, threshold=args.threshold, threshold_d=args.threshold_d)
        version = r.version.name
    n = write_decisions_csv(args.output, pairs, results)
    bad = [(e.line, e.message) for e in pairs.errors]
    bad += [(row.line, res.error) for row, res in zip(pairs.rows, results, strict=True) if res.error]
    bad.sort()
    answered = n - len(bad)
    same = sum(1 for res in results if res.error is None and res.same)
    summary = {"input": str(args.csv), "output": str(args.output), "rows": n, "answered": answered, "same": same,
               "bad_rows": [{"line": line, "error": msg} for line, msg in bad], "encoder_version": version,
               "threshold_cos": results[0].threshold_cos if results else None}  # fmt: skip
    if args.json:
        print(dumps(summary))
    else:
        print(f"{answered}/{n} pairs answered ({same} same) -> {args.output}  [encoder {version}]")
        for line, msg in bad[:20]:
            print(f"  line {line}: {printable(msg)}", file=sys.stderr)
        if len(bad) > 20:
            print(f"  ... and {len(bad) - 20} more bad rows (see the error column)", file=sys.stderr)
    return 0 if not bad else 1
