"""The exceptions symgrad raises. Every error a user can trigger is a SymgradError."""


class SymgradError(Exception):
    """Base class of every error symgrad raises on bad input."""


class ParseError(SymgradError, ValueError):
    """The string frontend could not read the text; the message shows the text and a caret."""

    def __init__(self, message, text=None, column=None):
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
