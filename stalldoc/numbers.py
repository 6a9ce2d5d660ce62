"""How numbers are written for people: in detector messages and in every report.

A neutral module: detectors and renderers both import it, neither from the other.
"""

from __future__ import annotations

import math
from typing import Any


def fmt(value: float) -> str:
    """A number for a message: 3 significant digits, scientific when tiny or huge."""
    value = float(value)
    if not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if value == 0:
        return "0"
    if abs(value) < 1e-3 or abs(value) >= 1e5:
        return f"{value:.2e}"
    return f"{value:.3g}"


def num(value: Any) -> str:
    """A value a report shows: a number as ``fmt`` writes it, ``n/a`` for None, else the text itself."""
    if value is None:
        return "n/a"
    try:
        return fmt(float(value))
    except (TypeError, ValueError):
        return str(value)


def signed_percent(share: Any) -> str:
    """A share as a signed percentage with two decimals (``-0.1`` -> ``-10.00%``), ``n/a`` when unknown."""
    try:
        share = float(share)
    except (TypeError, ValueError):
        return "n/a"
    return f"{share * 100:+.2f}%" if math.isfinite(share) else "n/a"
