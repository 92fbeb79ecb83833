"""The one exception type the library raises for bad input.

The CLI turns a :class:`DGNError` into a one-line message and exit status 2; anything
else is a bug and keeps its traceback.
"""


class DGNError(ValueError):
    """Bad input or configuration: the message names the problem and the valid choices."""


PRECISIONS = ("fp32", "bf16")


def check_choice(what: str, value: object, choices) -> None:
    """Raise ``unknown {what} {value!r}; valid: a, b, ...`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise DGNError(f"unknown {what} {value!r}; valid: {', '.join(map(str, choices))}")


def check_at_least(what: str, value: float, low: float) -> None:
    """Raise ``{what} must be >= {low}, got {value}`` unless ``value >= low``."""
    if not value >= low:
        raise DGNError(f"{what} must be >= {low}, got {value}")


def check_decay(decay: float) -> None:
    """act_max's decay multiplies the code after each step: it must be in (0, 1]."""
    if not 0 < decay <= 1:
        raise DGNError(f"decay must be in (0, 1], got {decay}")


def check_weight(what: str, value: float) -> None:
    """Raise ``{what} must be a finite number >= 0, got {value}`` unless it is one (NaN and inf fail)."""
    if not (value >= 0 and value != float("inf")):
        raise DGNError(f"{what} must be a finite number >= 0, got {value}")
