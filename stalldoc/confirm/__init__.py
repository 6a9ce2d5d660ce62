"""The confirm stage: each suspected cause's fix, tried against a control.

``catalog`` names the interventions (light: read by `stalldoc explain` and the renderers);
``run`` runs them on the probe's traced step (imported only when the stage runs).
"""

from __future__ import annotations

from stalldoc.confirm.catalog import CATALOG, Intervention, describe

__all__ = ["CATALOG", "Intervention", "describe"]
