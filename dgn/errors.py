"""The one exception type the library raises for bad input.

The CLI turns a :class:`DGNError` into a one-line message and exit status 2; anything
else is a bug and keeps its traceback.
"""


class DGNError(ValueError):
    """Bad input or configuration: the message names the problem and the valid choices."""
