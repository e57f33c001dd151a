"""The one exception type for errors a user can cause and fix."""


class AsrbenchError(Exception):
    """A problem the user can fix (bad path, bad audio, unknown model, missing baseline).

    The message says what was wrong and what to do; the CLI prints it on one line, without
    a traceback, and exits with status 2.
    """
