"""``frogs-analyze DIR [DIR ...]``: load trial records, print success rates, write outputs.

Exit codes: 0 done, 2 bad input (no records, unknown column), one error line, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis.load import NoRecordsError, load_records
from analysis.stats import (
    PARAM_COLUMNS,
    SETTINGS_PREFIXES,
    UnknownColumnError,
    compares_defenses,
    defense_table,
    format_values,
    success_table,
)

logger = logging.getLogger("analysis")
PROG = "frogs-analyze"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Aggregate frogs trial records (results.jsonl) into success rates, "
        "figures and an HTML report.",
    )
    parser.add_argument(
        "dirs", nargs="+", metavar="DIR", type=Path,
        help="directories searched recursively for results.jsonl (runs, multiruns, sweeps)",
    )  # fmt: skip
    parser.add_argument(
        "--by", nargs="+", metavar="COL",
        help="group success rates by these columns (default: the varying parameters among "
        f"{', '.join(PARAM_COLUMNS)} and every {', '.join(p + '*' for p in SETTINGS_PREFIXES)} "
        "setting column, e.g. attack.num_poisons victim.epochs defense.k)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, metavar="OUT",
        help="write success.csv (+ .parquet; defenses.csv too when the records hold several "
        "attacks or defenses), the figures (PNG and PDF) and the report here",
    )  # fmt: skip
    parser.add_argument(
        "--defenses", type=Path, metavar="FILE.md",
        help="write the attacks-against-defenses table (one row per attack and defense: n, "
        "success rate with Wilson 95 %% CI, poison recall, clean points removed, "
        "perceptibility, control successes) to this Markdown file",
    )  # fmt: skip
    parser.add_argument(
        "--report", action="store_true", help="also write OUT/report.html (needs --out)"
    )
    parser.add_argument("--no-figures", action="store_true", help="do not draw figures")
    parser.add_argument(
        "--replication", type=Path, metavar="REPORT.md",
        help="write the replication report (every claim of the paper beside frogs' number, "
        "analysis/claims.py) to this Markdown file, its figures under img/ beside it",
    )  # fmt: skip
    parser.add_argument(
        "--notes", type=Path, metavar="NOTES.md",
        help="Markdown inserted under the replication report's table (measured remarks)",
    )  # fmt: skip
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings only")
    return parser


def format_table(table: pd.DataFrame) -> str:
    """The success table as aligned text: rates to three decimals, PSNR and L-inf/255 to two,
    SSIM to four."""
    if table.empty:
        return "no ok trials: no success rates"
    return format_values(table).to_string(index=False)


def _error(message: str) -> int:
    """Print one error line and return the bad-input exit code."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _command(argv: Sequence[str] | None) -> str:
    """The command line as typed (for the generated Markdown files)."""
    return " ".join([PROG, *(sys.argv[1:] if argv is None else argv)])


def _replication(
    frame: pd.DataFrame, out: Path, notes: Path | None, argv: Sequence[str] | None
) -> None:
    """Write the replication report and print its headline rows."""
    from analysis.replication import write_replication

    text = notes.read_text() if notes is not None else ""
    path, results = write_replication(frame, out, _command(argv), text)
    print()
    for row in results:
        print(f"claim {row.claim.key} ({row.claim.title}): {row.number} -> {row.verdict_text}")
    logger.info("wrote %s", path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.report and args.out is None:
        parser.error("--report needs --out DIR")
    if args.notes is not None and args.replication is None:
        parser.error("--notes needs --replication REPORT.md")
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    # force: the handler writes to this call's stderr, not to one an earlier call in the same
    # process (a test's captured stream, since closed) left behind
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    logger.setLevel(level)
    try:
        result = load_records(args.dirs)
        table = success_table(result.frame, by=args.by)
        several = compares_defenses(result.frame)
        defenses = defense_table(result.frame) if several or args.defenses else None
    except (NoRecordsError, UnknownColumnError) as exc:
        return _error(str(exc))
    print(result.summary())
    print()
    print(format_table(table))
    if several:
        print()
        print("attacks against defenses:")
        print(format_table(defenses))
    if args.defenses is not None:
        from analysis.report import write_defenses

        logger.info("wrote %s", write_defenses(defenses, args.defenses, _command(argv)))
    if args.replication is not None:
        _replication(result.frame, args.replication, args.notes, argv)
    if args.out is None:
        return 0
    from analysis.figures import make_figures
    from analysis.outputs import write_table

    for path in write_table(table, args.out, "success"):
        logger.info("wrote %s", path)
    if several:
        for path in write_table(defenses, args.out, "defenses"):
            logger.info("wrote %s", path)
    figures = None if args.no_figures else make_figures(result.frame, args.out)
    if figures is not None:
        logger.info("wrote %d figure(s) to %s", len(figures.written), args.out)
    if args.report:
        from analysis.report import write_report

        write_report(result, table, args.out, figures)
    return 0
