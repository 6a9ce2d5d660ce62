"""Integrations: thin layers over the same pipeline (the Keras callback; later `stalldoc run`)."""
