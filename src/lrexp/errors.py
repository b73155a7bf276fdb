"""The one exception type for mistakes a user can fix (bad config, missing data, no GPU, ...).

Entry points print its message without a traceback and exit with status 2; every other
exception is a bug and keeps its traceback (status 1).
"""


class LrexpError(Exception):
    """An anticipated user error; the message names the key or path and the fix."""


class RunInterrupted(Exception):
    """Ctrl-C during a run; the message says how to resume. Exit status 130, as shells use."""
