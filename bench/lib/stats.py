"""Summaries and formatting of bench numbers."""
import math
import statistics


def summary(values):
    """median, p95 (nearest rank), min, max and mean of a non-empty list of numbers."""
    ordered = sorted(values)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {"median": statistics.median(ordered), "p95": p95, "min": ordered[0],
            "max": ordered[-1], "mean": statistics.fmean(ordered), "n": len(ordered)}


def ratio(numerator, denominator):
    """numerator / denominator, None when the denominator is zero."""
    return numerator / denominator if denominator else None


def fmt_ratio(value):
    return "n/a" if value is None else f"{value:.1f}x"


def fmt_spread(stats, digits=1):
    """'median [min-max]', or just the number when all values are equal."""
    median = f"{stats['median']:.{digits}f}"
    if stats["min"] == stats["max"]:
        return median
    return f"{median} [{stats['min']:.{digits}f}-{stats['max']:.{digits}f}]"


def table(header, rows):
    """A plain-text table, first column left-aligned, the others right-aligned."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(row):
        cells = [str(row[0]).ljust(widths[0])]
        cells += [str(cell).rjust(width) for cell, width in zip(row[1:], widths[1:])]
        return "  ".join(cells)

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *map(line, rows)])
