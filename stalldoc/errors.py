"""Errors that end a run with exit code 2 and one clear line on stderr."""


class StalldocError(Exception):
    """Bad usage or bad input: the message is one line naming the file and the problem."""


class InputError(StalldocError):
    """A model, data or loss file that cannot be used."""
