"""The one exception type that means "the user asked for something we cannot do"."""


class InputError(ValueError):
    """A user mistake (bad file, bad size, bad option).

    The message is one sentence that names the problem and the fix; the command line
    prints it without a traceback and exits with code 2.
    """


def check_at_least(value: int, least: int, option: str, default: int) -> None:
    """Refuse an option's value below ``least`` (a count or a width), naming the option
    and its default: the one message for settings that have no sense below a bound.

    Raises:
        InputError: ``value < least``.
    """
    if value < least:
        raise InputError(f"{option} must be at least {least}, got {value}; leave it out for the default, {default}")
