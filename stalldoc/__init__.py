"""stalldoc: find out why a Keras model's loss does not move."""

__version__ = "0.1.0"

__all__ = ["__version__", "diagnose"]


def __getattr__(name: str):
    # Lazy: `import stalldoc` (and `stalldoc --help`) never imports TensorFlow or Keras.
    if name == "diagnose":
        from stalldoc.api import diagnose

        return diagnose
    if name == "keras":
        import importlib

        return importlib.import_module("stalldoc.keras")
    raise AttributeError(f"module 'stalldoc' has no attribute {name!r}")
