"""The benchmarks' targets, each judged from figures measured in the same run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One target: what was compared, the figures, the limit and whether the run met it."""

    comparison: str
    measured: str
    limit: str
    met: bool


def ratio_at_most(
    comparison: str, numerator: float, denominator: float, limit: float, unit: str
) -> Target:
    """Judge ``numerator / denominator`` against an upper limit; figures print in ``unit``."""
    return _ratio(comparison, numerator, denominator, limit, unit, at_most=True)


def ratio_at_least(
    comparison: str, numerator: float, denominator: float, limit: float, unit: str
) -> Target:
    """Judge ``numerator / denominator`` against a lower limit; figures print in ``unit``."""
    return _ratio(comparison, numerator, denominator, limit, unit, at_most=False)


def _ratio(
    comparison: str,
    numerator: float,
    denominator: float,
    limit: float,
    unit: str,
    *,
    at_most: bool,
) -> Target:
    ratio = numerator / denominator
    # Upper limits sit near the ratio (3x against about 2.7x), so their ratio gets a second
    # decimal. Lower limits are met by far (10x against about 50x).
    ratio_text = f"{ratio:.2f}x" if at_most else f"{ratio:.1f}x"
    return Target(
        comparison,
        f"{_figure(numerator, unit)} / {_figure(denominator, unit)} = {ratio_text}",
        f"at most {limit:g}x" if at_most else f"at least {limit:g}x",
        ratio <= limit if at_most else ratio >= limit,
    )


def _figure(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value * 1000:,.1f} ms"
    return f"{value:,.2f} {unit}"


def table(targets: list[Target]) -> str:
    """Return the targets as a Markdown table, with a last line that counts the misses."""
    lines = ["| target | measured | limit | verdict |", "| --- | --- | --- | --- |"]
    for target in targets:
        verdict = "met" if target.met else "MISSED"
        lines.append(f"| {target.comparison} | {target.measured} | {target.limit} | {verdict} |")
    missed = sum(not target.met for target in targets)
    lines.append("")
    lines.append(
        f"{len(targets) - missed} of {len(targets)} targets met"
        + (f"; {missed} missed" if missed else "")
    )
    return "\n".join(lines)
