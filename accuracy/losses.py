"""Custom loss functions some accuracy cases are compiled with.

stalldoc loads models in Keras safe mode and cannot rebuild a plain Python loss by itself: a case
compiled with one of these passes ``--loss accuracy/losses.py:NAME`` through its ``cli_args``, as a
user would. Plain functions, importable by path; no registration, no Lambda.
"""

import keras


def inverted_cosine(y_true, y_pred):
    """The seed article's loss as written: ``1 - keras.losses.cosine_similarity``.

    Keras' ``cosine_similarity`` is already the *negative* cosine, so this is 1 + cos: it is
    lowest when the predictions point away from the targets.
    """
    return 1 - keras.losses.cosine_similarity(y_true, y_pred)


def cosine_distance(y_true, y_pred):
    """The intended 1 - cos (Keras' value is -cos, so add it to 1)."""
    return 1 + keras.losses.cosine_similarity(y_true, y_pred)


CUSTOM_OBJECTS = {"inverted_cosine": inverted_cosine, "cosine_distance": cosine_distance}
