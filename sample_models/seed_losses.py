"""The seed article's loss function, exactly as it is written there.

    def cosine_difference_loss(y_true, y_pred):
        return 1 - tf.keras.losses.cosine_similarity(y_true, y_pred)

Keras' cosine_similarity already returns the *negative* cosine, so this is 1 + cos: it is
lowest when predictions point away from the targets. The sample model
``seed_inverted_loss.keras`` is compiled with it; to rebuild that model's loss, stalldoc
needs the function:

    stalldoc check sample_models/seed_inverted_loss.keras sample_models/seed_inverted_loss.npz \
        --loss sample_models/seed_losses.py:cosine_difference_loss
"""

import tensorflow as tf


def cosine_difference_loss(y_true, y_pred):
    return 1 - tf.keras.losses.cosine_similarity(y_true, y_pred)


def fixed_cosine_difference_loss(y_true, y_pred):
    """The intended 1 - cos: Keras' value is -cos, so add it to 1."""
    return 1 + tf.keras.losses.cosine_similarity(y_true, y_pred)
