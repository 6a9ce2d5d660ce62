"""The accuracy corpus: labeled stalled and healthy Keras models, their build and their score (see README.md)."""
