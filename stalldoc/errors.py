"""Errors that end a run with exit code 2 and one clear line on stderr."""


class StalldocError(Exception):
    """Bad usage or bad input: the message is one line naming the file and the problem."""


class InputError(StalldocError):
    """A model, data or loss file that cannot be used."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, at most ``limit`` characters.

    TensorFlow's errors embed a traceback ("in user code: File ...", "Graph execution
    error: ... (most recent call last)") around the actual message: keep that message.
    """
    text = str(exc)
    if "in user code:" in text or "most recent call last" in text:
        # The message is the last line that is neither a node annotation nor a file line.
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith(("[[", "File "))]
        text = lines[-1] if lines else text
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
