"""stalldoc: find out why a Keras model's loss does not move."""

__version__ = "0.1.0"
