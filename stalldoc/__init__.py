"""stalldoc: find out why a Keras model's loss does not move.

The public API: ``stalldoc.diagnose`` (a Keras model on arrays -> ``Report``), ``Report``,
``Finding``, ``Severity``, ``StalldocError``, and ``stalldoc.keras.StallWatch``. Everything
is imported on first use: ``import stalldoc`` (and ``stalldoc --help``) never imports
TensorFlow or Keras.
"""

__version__ = "0.1.0"

__all__ = ["Finding", "Report", "Severity", "StalldocError", "__version__", "diagnose"]

# name -> the module that defines it, imported when the name is first read.
_LAZY = {
    "diagnose": "stalldoc.api",
    "Report": "stalldoc.findings",
    "Finding": "stalldoc.findings",
    "Severity": "stalldoc.findings",
    "StalldocError": "stalldoc.errors",
}


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "keras":
        return importlib.import_module("stalldoc.keras")
    raise AttributeError(f"module 'stalldoc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, "keras"])
