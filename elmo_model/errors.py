"""The one exception type for errors a user can cause (bad files, bad options, bad input), and
:func:`no_space`, which tells a full disk among the errors of the libraries that write files."""

import errno


class ElmoError(Exception):
    """A problem with user-supplied input: the message names the file/URL and what was expected."""


def no_space(exc: BaseException) -> bool:
    """Whether ``exc`` or an error in its chain (``__cause__``, ``__context__``) says the disk is
    full: ``ENOSPC``, or the text of it (a Ray worker's traceback; HDF5, whose message carries
    ``errno = 28``)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        text = str(seen)
        if "No space left on device" in text or "errno = 28" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
