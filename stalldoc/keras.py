"""Keras integrations: ``stalldoc.keras.StallWatch``, a callback that diagnoses a stalled fit.

    from stalldoc.keras import StallWatch
    model.fit(x, y, epochs=50, callbacks=[StallWatch(patience=3)])
"""

import keras  # noqa: F401 - absolute import: the real Keras, not this module

from stalldoc.integrations.keras_callback import StallWatch

__all__ = ["StallWatch"]
