"""The exceptions symgrad raises. Every error a user can trigger is a SymgradError."""

from __future__ import annotations


class SymgradError(Exception):
    """Base class of every error symgrad raises on bad input."""


class ParseError(SymgradError, ValueError):
    """The string frontend could not read the text; the message shows the text and a caret."""

    text: str | None
    column: int | None

    def __init__(self, message: str, text: str | None = None, column: int | None = None) -> None:
        self.text = text
        self.column = column
        if text is not None and column is not None:
            shown = text.replace("\n", " ").replace("\t", " ")
            message = f"{message}\n  {shown}\n  {' ' * column}^"
        super().__init__(message)


class ShapeError(SymgradError, ValueError):
    """Shapes that do not fit together, raised when the graph is built."""


class InputError(SymgradError, TypeError):
    """A compiled function was called with arguments it cannot take."""


class UnsupportedError(SymgradError, NotImplementedError):
    """A construct symgrad cannot handle; the message names it."""


class SolverError(SymgradError, RuntimeError):
    """A numerical solve symgrad runs (``sg.root``, ``sg.fixed_point``, ``sg.argmin``) failed: it
    did not converge (the message names the residual) or its Jacobian is singular."""
