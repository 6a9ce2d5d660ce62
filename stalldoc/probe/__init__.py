"""The probe: instrumented training steps that turn a model and its data into Facts."""
