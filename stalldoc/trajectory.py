"""How far the loss moved during the probe: the one measure the verdict and detectors share."""

from __future__ import annotations

import math

from stalldoc.facts import Facts

# Progress is the share of the way from the loss's starting value to its floor (the loss at
# a perfect prediction) covered by the probe's steps; without a known floor, its relative
# fall. Measured over 20 steps: healthy sample 41%, healthy zoo models 3.3% (small CNN) to
# 84%; stalled samples 0.0-0.9%; a model that only learns its output bias because every
# ReLU before it is dead, 2.5%. So below FLAT_PROGRESS the loss is flat; at or above
# MOVING_PROGRESS it moves; in between it counts as stalled only when a warning-level cause
# was found.
FLAT_PROGRESS = 0.01
MOVING_PROGRESS = 0.05


def loss_progress(facts: Facts) -> float:
    """Share of the way from the initial loss to its floor covered by the probe's steps.

    Positive when the loss falls, negative when it rises, NaN when it became non-finite.
    """
    loss = facts.loss
    if not (math.isfinite(loss.initial) and math.isfinite(loss.final)):
        return float("nan")
    floor = loss.floor if loss.floor is not None and math.isfinite(loss.floor) else None
    if floor is not None and loss.initial - floor > 1e-12:
        return (loss.initial - loss.final) / (loss.initial - floor)
    return -loss.relative_change


def is_moving(facts: Facts) -> bool:
    progress = loss_progress(facts)
    return math.isfinite(progress) and progress >= MOVING_PROGRESS


def is_flat(facts: Facts) -> bool:
    progress = loss_progress(facts)
    return math.isfinite(progress) and abs(progress) < FLAT_PROGRESS
