"""The one exception type for errors a user can cause (bad files, bad options, bad input)."""


class ElmoError(Exception):
    """A problem with user-supplied input: the message names the file/URL and what was expected."""
