"""The one exception type that means "the user asked for something we cannot do"."""


class InputError(ValueError):
    """A user mistake (bad file, bad size, bad option).

    The message is one sentence that names the problem and the fix; the command line
    prints it without a traceback and exits with code 2.
    """
