"""Inputs: load and validate the model, the data and the loss (the first stage)."""
