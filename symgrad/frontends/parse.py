"""The string frontend: ``sg.parse(text)`` reads a formula into the graph without running it.

A hand-written tokenizer and precedence parser read the text. Nothing in it is
ever handed to Python to run: the parser only looks names up in the fixed
tables below (``FUNCTIONS``, ``CONSTANTS``) and applies symgrad's builders and
Python's arithmetic operators to the values it has parsed (expressions and
numbers). A formula therefore builds exactly the graph the same text would
build as Python code over symgrad symbols, and hash-consing makes it the very
same object: ``sg.parse("x*y + sin(x)") is x*y + sg.sin(x)``.

Grammar (EBNF; quoted strings are tokens; spaces, tabs and newlines between
tokens are ignored)::

    formula    = value END ;                 (* an expression or a number *)
    value      = unary { binop unary } ;     (* precedence and grouping below *)
    binop      = "<" | "<=" | ">" | ">=" | "==" | "!="
               | "|" | "&" | "+" | "-" | "*" | "/" | "@" | "%" ;
    unary      = { "-" | "+" | "~" } power ;
    power      = postfix [ "**" unary ] ;
    postfix    = atom { "[" subscripts "]" | "." "T" } ;
    atom       = NUMBER | "True" | "False" | "None"
               | NAME                                   (* a symbol, or pi / e *)
               | NAME "(" [ arguments ] ")"             (* a function of FUNCTIONS *)
               | "(" value ")"
               | "(" [ value "," { value "," } [ value ] ] ")" ;  (* a tuple *)
    arguments  = argument { "," argument } [ "," ] ;
    argument   = [ NAME "=" ] value ;               (* keyword values are literals *)
    subscripts = subscript { "," subscript } [ "," ] ;
    subscript  = "..." | value | [ value ] ":" [ value ] [ ":" [ value ] ] ;
    NUMBER     = ( DIGITS [ "." [ DIGITS ] ] | "." DIGITS ) [ ( "e" | "E" ) [ "+" | "-" ] DIGITS ] ;
    NAME       = ( LETTER | "_" ) { LETTER | DIGIT | "_" } ;    (* ASCII only *)

Binary operators from loosest to tightest, as in Python:

    1. comparisons  < <= > >= == !=   (not chained: ``a < b < c`` is an error)
    2. ``|``   3. ``&``   4. ``+ -``   5. ``* / @ %``   (left-associative)
    6. unary ``- + ~``
    7. ``**``, right-associative, binding tighter than a unary operator on its
       left and looser than one on its right: ``-x**2`` is ``-(x**2)``,
       ``2**3**2`` is ``2**9``, ``2**-1`` is ``0.5``
    8. subscripts, ``.T`` and calls

Meaning of names and values:

- A name declared in ``shapes`` or ``dtypes`` is ``sg.tensor(name, shape,
  dtype)`` (shape ``()`` and float64 unless given; symbolic dims such as
  ``("n", "d")`` are allowed). Otherwise ``pi`` and ``e`` are ``math.pi`` and
  ``math.e``, a name of ``FUNCTIONS`` must be called, and any other name is a
  float64 scalar symbol, ``sg.scalar(name)``.
- Only the functions of ``FUNCTIONS`` (symgrad's public builders) can be called,
  and only by name; keyword argument values must be literals (numbers,
  ``True``/``False``, ``None``, tuples of them), e.g. ``sum(X, axis=(0, 1))``.
- ``max(a, b, ...)`` / ``min(a, b, ...)`` of several values are the elementwise
  ``maximum`` / ``minimum`` (Python's ``max(x, y)``); ``max(X)``, ``max(X, 1)`` and
  ``max(X, axis=1, keepdims=True)`` of one array are the reduction, as numpy's
  ``np.max(X, 1)`` (a second positional argument that is an axis literal on an array
  means the axis; write ``maximum(X, 1)`` to clamp). ``a % b`` is ``mod(a, b)``, numpy's
  remainder with the sign of ``b`` (Python's ``%`` on two numbers, which agrees).
- A loop is ``fold(body, h, h0, x, xs)``: the recurrence ``h = body`` from ``h0``, one step per
  row ``x`` of ``xs`` (``fold(body, h, h0, length=10)`` without rows); the final ``h``, or every
  step's with ``history=True``. ``h`` and ``x`` are names the body reads (declare their shapes
  in ``shapes``), e.g. ``fold(tanh(W @ h + x), h, h0, x, xs)``; ``xs`` may have a symbolic length.
- Tuples may only be function arguments; ``None`` may only be an argument or a
  subscript (``x[None]``).
- The one attribute is ``.T`` (transpose), as on numpy arrays; any other
  attribute access is a ``ParseError``.
- Numbers are Python ints and floats, and arithmetic between two numbers is
  Python's (``2**-1 == 0.5``), so literals stay weakly typed exactly as in the
  builder API. Integers must fit in int64.
- Not part of the grammar, and a ``ParseError`` with a caret under the column:
  strings, attribute access other than ``.T``, lambdas, conditional
  expressions, comprehensions, any other Python keyword, names starting with
  ``__``, ``=`` outside a keyword argument, ``:=``, ``;``, ``\\``, ``//``,
  ``^`` and any non-ASCII character.
- Limits: at most ``MAX_LENGTH`` characters and ``MAX_DEPTH`` nested brackets,
  so no input can exhaust the Python stack or run for long. Integer powers
  and literals must fit in int64 (``10**10**10`` is refused before it is
  computed), and no constant larger than ``ops.registry.FOLD_LIMIT`` elements is
  computed while parsing: ``arange(10**8)`` stays an op that the compiled
  function computes.

Grammar problems are ``ParseError``. What the builders reject (shapes that do
not broadcast, an axis out of range) is raised as they raise it (``ShapeError``,
``UnsupportedError``); a constant that cannot be computed (``1/0``) is an
``UnsupportedError`` naming its column.
"""

import inspect
import keyword
import math
import operator
import re
from collections.abc import Mapping

from .. import loops, ops
from ..errors import ParseError, SymgradError, UnsupportedError
from ..graph import Expr
from ..symbol_constructors import tensor

MAX_LENGTH = 100_000
MAX_DEPTH = 64  # each level costs ~6 Python frames; the default stack allows 1000

_UNSET = object()


def _is_axis_literal(value):
    if isinstance(value, tuple):
        return all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    return value is None or isinstance(value, int)  # an int, or True/False for keepdims


def _extremum(name, reduction, elementwise):
    """``max``/``min`` as Python and numpy both spell them: ``max(X)``, ``max(X, 1)`` and
    ``max(X, axis=1)`` reduce one array (numpy's ``np.max(X, axis, keepdims)``); ``max(a, b, ...)``
    of several values is their elementwise maximum (Python's ``max(a, b)``). The call is the
    reduction when its first argument is an array and every other positional argument is an
    axis literal (an int, a tuple of ints, None, True/False); otherwise it is elementwise."""

    def build(x, *more, axis=_UNSET, keepdims=_UNSET):
        options = {k: v for k, v in (("axis", axis), ("keepdims", keepdims)) if v is not _UNSET}
        if not more or (isinstance(x, Expr) and x.ndim > 0 and all(_is_axis_literal(m) for m in more)):
            return reduction(x, *more, **options)
        if options:
            raise UnsupportedError(
                f"{name}(a, b, ...) of several values is the elementwise {elementwise.__name__}; "
                f"{', '.join(f'{k}=' for k in options)} belong to {name}(X, axis=...) of one array"
            )
        value = x
        for other in more:
            value = elementwise(value, other)
        return value

    build.__name__ = name
    return build


# The functions a formula may call: symgrad's public builders, by their sg.* names.
FUNCTIONS = {
    # elementwise: every spelling the op table gives (OpDef.parse)
    **{spelling: op.builder for op in ops.OPS.values() if op.elementwise for spelling in op.parse},
    # reductions
    "sum": ops.sum,
    "mean": ops.mean,
    "max": _extremum("max", ops.max, ops.maximum),
    "min": _extremum("min", ops.min, ops.minimum),
    "prod": ops.prod,
    "logsumexp": ops.logsumexp,
    "softmax": ops.softmax,
    "log_softmax": ops.log_softmax,
    # linear algebra
    "matmul": ops.matmul,
    "dot": ops.dot,
    "outer": ops.outer,
    "tensordot": ops.tensordot,
    "inner": ops.inner,
    "kron": ops.kron,
    "cross": ops.cross,
    "trace": ops.trace,
    "diag": ops.diag,
    "diagonal": ops.diagonal,
    "tril": ops.tril,
    "triu": ops.triu,
    # structure
    "reshape": ops.reshape,
    "expand_dims": ops.expand_dims,
    "squeeze": ops.squeeze,
    "broadcast_to": ops.broadcast_to,
    "transpose": ops.transpose,
    "concatenate": ops.concatenate,
    "stack": ops.stack,
    "take": ops.take,
    "take_along_axis": ops.take_along_axis,
    "arange": ops.arange,
    # array functions (ops/arrays.py) that return one array
    "cumsum": ops.cumsum,
    "cumprod": ops.cumprod,
    "sort": ops.sort,
    "argsort": ops.argsort,
    "flip": ops.flip,
    "fliplr": ops.fliplr,
    "flipud": ops.flipud,
    "rot90": ops.rot90,
    "roll": ops.roll,
    "pad": ops.pad,
    "tile": ops.tile,
    "repeat": ops.repeat,
    "moveaxis": ops.moveaxis,
    "rollaxis": ops.rollaxis,
    "hstack": ops.hstack,
    "vstack": ops.vstack,
    "column_stack": ops.column_stack,
    "append": ops.append,
    "select": ops.select,
    "linspace": ops.linspace,
    "fmax": ops.fmax,
    "fmin": ops.fmin,
    "degrees": ops.degrees,
    "radians": ops.radians,
    "sinc": ops.sinc,
    "nan_to_num": ops.nan_to_num,
    "isnan": ops.isnan,
    "real": ops.real,
    "imag": ops.imag,
    "conjugate": ops.conjugate,
    # a loop written as one expression (sg.fold, the formula form of sg.scan)
    "fold": loops.fold,
}

CONSTANTS = {"pi": math.pi, "e": math.e}

_SIGNATURES = {name: inspect.signature(fn) for name, fn in FUNCTIONS.items()}


def install_function(name, builder):
    """Let formulas call ``name(...)`` as ``builder`` (a user's op, ``sg.register_op``)."""
    FUNCTIONS[name] = builder
    _SIGNATURES[name] = inspect.signature(builder)


def remove_function(name):
    FUNCTIONS.pop(name, None)
    _SIGNATURES.pop(name, None)


_BINARY = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "|": operator.or_,
    "&": operator.and_,
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "@": operator.matmul,
    "%": operator.mod,
    "**": operator.pow,
}
_PRECEDENCE = {
    "<": 1,
    "<=": 1,
    ">": 1,
    ">=": 1,
    "==": 1,
    "!=": 1,
    "|": 2,
    "&": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "@": 5,
    "%": 5,
}
_COMPARISON = 1
_PREFIX = {"-": operator.neg, "+": operator.pos, "~": operator.invert}

_INT64 = range(-(2**63), 2**63)

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | (?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*|//|<=|>=|==|!=|:=|<<|>>|->|\.\.\.|[-+*/@<>()\[\],:=.~&|%^])
""",
    re.VERBOSE,
)

# Operators Python has and formulas do not; each gets a message saying so.
_REJECTED_OPS = {
    "//": "'//' (floor division) is not supported",
    "^": "'^' is not a power here; write '**'",
    "<<": "'<<' (shift) is not supported",
    ">>": "'>>' (shift) is not supported",
    "->": "'->' is not part of the formula grammar",
    ":=": "assignment expressions (':=') are not allowed; a formula only describes a value",
}
_REJECTED_CHARS = {
    "'": "strings are not part of the formula grammar",
    '"': "strings are not part of the formula grammar",
    ";": "a formula is one expression; ';' is not allowed",
    "\\": "backslashes are not allowed in a formula",
    "#": "comments are not allowed in a formula",
    "{": "sets and dicts are not part of the formula grammar",
    "}": "sets and dicts are not part of the formula grammar",
}
_KEYWORD_HINTS = {
    "if": "conditional expressions are not supported; use where(cond, a, b)",
    "else": "conditional expressions are not supported; use where(cond, a, b)",
    "and": "'and' is not supported; use logical_and(a, b) or '&'",
    "or": "'or' is not supported; use logical_or(a, b) or '|'",
    "not": "'not' is not supported; use logical_not(a) or '~'",
    "is": "'is' is not supported; use '=='",
    "lambda": "lambdas are not part of the formula grammar",
    "for": "comprehensions are not part of the formula grammar",
    "in": "'in' is not part of the formula grammar",
}

_SHOWN_CHARS = 120  # longer texts are shown as an excerpt around the error


class _Token:
    __slots__ = ("kind", "text", "column")

    def __init__(self, kind, text, column):
        self.kind, self.text, self.column = kind, text, column

    def is_op(self, *texts):
        return self.kind == "op" and self.text in texts

    def describe(self):
        if self.kind == "end":
            return "the end of the input"
        if self.kind == "name":
            return f"the name {self.text!r}"
        if self.kind == "number":
            return f"the number {self.text}"
        return repr(self.text)


def parse(text, shapes=None, dtypes=None):
    """Read a formula into an expression, never evaluating the text.

    ``shapes`` maps names to shapes (ints and dim names, e.g. ``{"X": ("n", "d")}``)
    and ``dtypes`` maps names to dtypes; other names are float64 scalars.
    ``sg.parse("sum((X @ w - t)**2)", shapes={"X": ("n", "d"), "w": ("d",), "t": ("n",)})``.
    The grammar is in this module's docstring."""
    if not isinstance(text, str):
        raise UnsupportedError(f"parse takes a string, got {type(text).__name__}")
    shapes = _name_map(shapes, "shapes")
    dtypes = _name_map(dtypes, "dtypes")
    return _Parser(text, shapes, dtypes).formula()


def _name_map(mapping, what):
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise UnsupportedError(
            f"parse({what}=...) takes a dict from names to {what}, got {type(mapping).__name__}"
        )
    for name in mapping:
        if not isinstance(name, str):
            raise UnsupportedError(f"parse({what}=...): key {name!r} is not a name")
    return dict(mapping)


def _is_literal(value):
    if isinstance(value, tuple):
        return all(_is_literal(v) for v in value)
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, Expr))


class _Parser:
    def __init__(self, text, shapes, dtypes):
        self.text = text
        self.shapes = shapes
        self.dtypes = dtypes
        self.end_column = len(text.rstrip(" \t\r\n"))
        self.tokens = self._tokenize()
        self.lookahead = []
        self.depth = 0
        self.symbols = {}

    # ------------------------------------------------------------ errors

    def error(self, message, column):
        """A ParseError with a caret under ``column``; long texts are shown as an excerpt."""
        text = self.text
        if len(text) <= _SHOWN_CHARS:
            return ParseError(message, text, column)
        start = max(0, min(column - _SHOWN_CHARS // 2, len(text) - _SHOWN_CHARS))
        head = "..." if start > 0 else ""
        tail = "..." if start + _SHOWN_CHARS < len(text) else ""
        excerpt = head + text[start : start + _SHOWN_CHARS] + tail
        err = ParseError(f"{message} (column {column})", excerpt, column - start + len(head))
        err.text, err.column = text, column
        return err

    def unexpected(self, token, expected):
        if token.kind == "name" and keyword.iskeyword(token.text):
            hint = _KEYWORD_HINTS.get(
                token.text, f"Python's {token.text!r} is not part of the formula grammar"
            )
            return self.error(hint, token.column)
        if token.is_op("="):
            return self.error(
                "assignment is not allowed; '=' only names a keyword argument such as sum(X, axis=1)",
                token.column,
            )
        if token.is_op("..."):
            return self.error("'...' can only be a subscript, as in x[..., 0]", token.column)
        return self.error(f"expected {expected}, found {token.describe()}", token.column)

    # ------------------------------------------------------------ tokens

    def _tokenize(self):
        text = self.text
        if len(text) > MAX_LENGTH:
            raise self.error(
                f"the formula is {len(text)} characters long; the limit is {MAX_LENGTH}", MAX_LENGTH
            )
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                raise self.error(self._bad_char_message(text[pos]), pos)
            kind, value = match.lastgroup, match.group()
            if kind == "number":
                self._check_number(value, match.end())
            elif kind == "op" and value in _REJECTED_OPS:
                raise self.error(_REJECTED_OPS[value], pos)
            if kind != "space":
                yield _Token(kind, value, pos)
            pos = match.end()
        while True:
            yield _Token("end", "", self.end_column)

    @staticmethod
    def _bad_char_message(char):
        if char in _REJECTED_CHARS:
            return _REJECTED_CHARS[char]
        if not char.isascii() or not char.isprintable():
            return f"unexpected character {char!r} (U+{ord(char):04X}); formulas are written in ASCII"
        return f"unexpected character {char!r}"

    def _check_number(self, literal, end):
        start = end - len(literal)
        following = self.text[end : end + 1]
        if following in ("e", "E") and "e" not in literal.lower():
            raise self.error(f"the exponent of the number {literal + following!r} has no digits", end)
        if following == "." or following.isdigit():
            raise self.error(f"malformed number {literal + following!r}", end)
        if following.isalnum() or following == "_":
            raise self.error(
                f"a number cannot be followed directly by {following!r}; "
                f"write {literal}*{following} for a product",
                end,
            )
        if literal.isdigit() and len(literal) > 1 and literal[0] == "0" and literal.strip("0"):
            raise self.error(f"leading zeros in the integer {literal!r} are not allowed", start)

    def peek(self, ahead=0):
        while len(self.lookahead) <= ahead:
            self.lookahead.append(next(self.tokens))
        return self.lookahead[ahead]

    def advance(self):
        token = self.peek()
        self.lookahead.pop(0)
        return token

    def open_bracket(self):
        token = self.advance()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"brackets are nested more than {MAX_DEPTH} deep", token.column)
        return token

    def close_bracket(self, opener, closer, expected):
        token = self.peek()
        if token.is_op(closer):
            self.depth -= 1
            return self.advance()
        if token.kind == "end":
            raise self.error(
                f"{opener.text!r} at column {opener.column} is never closed; expected {closer!r}",
                token.column,
            )
        if token.is_op(")", "]"):
            raise self.error(
                f"expected {closer!r} to close {opener.text!r} at column "
                f"{opener.column}, found {token.text!r}",
                token.column,
            )
        raise self.unexpected(token, expected)

    # ------------------------------------------------------------ building

    def build(self, what, column, fn, *args, **kwargs):
        """Apply a builder or operator; errors that are not symgrad's become UnsupportedError."""
        try:
            return fn(*args, **kwargs)
        except SymgradError:
            raise
        except Exception as exc:
            raise UnsupportedError(f"{what} at column {column}: {type(exc).__name__}: {exc}") from exc

    def operand(self, value, column, op_text):
        if isinstance(value, tuple):
            raise self.error(
                f"a tuple cannot be an operand of {op_text!r}; tuples are only function arguments", column
            )
        if value is None:
            raise self.error(f"None cannot be an operand of {op_text!r}", column)
        return value

    def apply(self, op_token, fn, *operands):
        """``fn`` (a Python operator) on parsed values; between two numbers it is Python's."""
        values = [self.operand(v, c, op_token.text) for v, c in operands]
        column = operands[0][1]
        if any(isinstance(v, Expr) for v in values):
            return self.build(f"{op_token.text!r}", op_token.column, fn, *values), column
        return self.fold(op_token, fn, values), column

    def fold(self, op_token, fn, values):
        if fn is operator.pow:
            base, exponent = values
            if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 and exponent > 64:
                raise UnsupportedError(
                    f"the constant {base}**{exponent} at column "
                    f"{op_token.column} does not fit in int64; "
                    "write the base as a float"
                )
        result = self.build(f"the constant expression at {op_token.text!r}", op_token.column, fn, *values)
        if isinstance(result, complex):
            raise UnsupportedError(
                f"the constant expression at {op_token.text!r} (column "
                f"{op_token.column}) is complex: {result}"
            )
        if isinstance(result, int) and result not in _INT64:
            raise UnsupportedError(f"the constant {result} at column {op_token.column} does not fit in int64")
        return result

    def symbol(self, token):
        name = token.text
        if name not in self.symbols:
            self.symbols[name] = tensor(name, self.shapes.get(name, ()), self.dtypes.get(name, "float64"))
        return self.symbols[name]

    # ------------------------------------------------------------ grammar

    def formula(self):
        if self.peek().kind == "end":
            raise self.error("the formula is empty", self.end_column)
        value, column = self.value()
        token = self.peek()
        if token.kind != "end":
            if token.is_op(")", "]"):
                raise self.error(f"unmatched {token.text!r}", token.column)
            raise self.unexpected(token, "an operator or the end of the input")
        if isinstance(value, tuple) or value is None:
            raise self.error(
                "a formula must be an expression or a number, not "
                f"{'a tuple' if value is not None else 'None'}",
                column,
            )
        return ops.as_expr(value)

    def value(self):
        """Binary operators by precedence climbing with an explicit stack (no recursion)."""
        operands = [self.unary()]
        operators = []
        compared = None
        while True:
            token = self.peek()
            precedence = _PRECEDENCE.get(token.text) if token.kind == "op" else None
            if precedence is None:
                break
            if precedence == _COMPARISON:
                if compared is not None:
                    raise self.error(
                        f"chained comparisons are not supported ({compared.text!r} at "
                        f"column {compared.column}, then {token.text!r}); "
                        "use logical_and(a < b, b < c)",
                        token.column,
                    )
                compared = token
            while operators and _PRECEDENCE[operators[-1].text] >= precedence:
                self.reduce(operands, operators)
            operators.append(self.advance())
            operands.append(self.unary())
        while operators:
            self.reduce(operands, operators)
        return operands[0]

    def reduce(self, operands, operators):
        op_token = operators.pop()
        rhs = operands.pop()
        lhs = operands.pop()
        operands.append(self.apply(op_token, _BINARY[op_token.text], lhs, rhs))

    def unary(self):
        """``{"-"|"+"|"~"} postfix ["**" unary]``, read in a loop and folded from the right."""
        chain = []  # (prefix tokens, base, "**" token or None)
        while True:
            prefixes = []
            while self.peek().is_op(*_PREFIX):
                prefixes.append(self.advance())
            base = self.postfix()
            if self.peek().is_op("**"):
                chain.append((prefixes, base, self.advance()))
                continue
            chain.append((prefixes, base, None))
            break
        # -a ** -b ** c  is  -(a ** (-(b ** c)))
        prefixes, value, _ = chain.pop()
        value = self.apply_prefixes(prefixes, value)
        while chain:
            prefixes, base, power = chain.pop()
            value = self.apply(power, operator.pow, base, value)
            value = self.apply_prefixes(prefixes, value)
        return value

    def apply_prefixes(self, prefixes, value):
        for token in reversed(prefixes):
            value = self.apply(token, _PREFIX[token.text], value)
            value = value[0], token.column
        return value

    def postfix(self):
        value, column = self.atom()
        while True:
            token = self.peek()
            if token.is_op("["):
                value = self.subscript(value, column)
            elif token.is_op("."):
                self.advance()
                attribute = self.peek()
                if attribute.kind != "name" or attribute.text != "T":
                    raise self.error(
                        "attribute access is not supported; the only attribute is .T (transpose)",
                        token.column,
                    )
                self.advance()
                if not isinstance(value, Expr):
                    raise self.error(".T applies to an expression, not to a literal", token.column)
                value = self.build(".T", token.column, ops.transpose, value)
            elif token.is_op("("):
                raise self.error(
                    "only a function named in the formula can be called, as in sin(x)", token.column
                )
            else:
                return value, column

    def atom(self):
        token = self.peek()
        if token.kind == "number":
            self.advance()
            return self.number(token), token.column
        if token.kind == "name":
            self.advance()
            return self.name(token), token.column
        if token.is_op("("):
            return self.parenthesized()
        raise self.unexpected(token, "an expression")

    def number(self, token):
        literal = token.text
        if literal.isdigit():
            value = int(literal) if len(literal) <= 19 else 2**63  # no int() of huge strings
            if value not in _INT64:
                raise self.error(
                    f"the integer {literal} does not fit in int64; write it as a float (e.g. 1e20)",
                    token.column,
                )
            return value
        return float(literal)

    def name(self, token):
        name = token.text
        if name in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[name]
        if keyword.iskeyword(name):
            raise self.unexpected(token, "an expression")
        if name.startswith("__"):
            raise self.error(f"names starting with '__' are not allowed: {name!r}", token.column)
        if self.peek().is_op("("):
            return self.call(token)
        if name in self.shapes or name in self.dtypes:
            return self.symbol(token)
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in FUNCTIONS:
            raise self.error(f"{name!r} is a function; call it, as in {name}(x)", token.column)
        return self.symbol(token)

    def call(self, name_token):
        name = name_token.text
        if name not in FUNCTIONS:
            if name in self.shapes or name in self.dtypes:
                reason = f"{name!r} is a symbol, not a function"
            else:
                reason = f"unknown function {name!r}"
            raise self.error(
                f"{reason}; the functions a formula can call are listed in symgrad.frontends.parse.FUNCTIONS",
                name_token.column,
            )
        opener = self.open_bracket()
        args, kwargs, columns = [], {}, []
        while not self.peek().is_op(")"):
            token = self.peek()
            if token.kind == "name" and self.peek(1).is_op("="):
                self.advance()
                self.advance()
                if token.text in kwargs:
                    raise self.error(f"keyword argument {token.text!r} given twice", token.column)
                value, column = self.value()
                if not _is_literal(value):
                    raise self.error(
                        f"keyword argument {token.text!r} must be a literal (a number, "
                        "True/False, None or a tuple of them)",
                        column,
                    )
                kwargs[token.text] = value
                columns.append(column)
            else:
                if kwargs:
                    raise self.error("a positional argument cannot follow a keyword argument", token.column)
                value, column = self.value()
                args.append(value)
                columns.append(column)
            if not self.peek().is_op(","):
                break
            self.advance()
        self.close_bracket(opener, ")", "',' or ')'")
        try:
            bound = _SIGNATURES[name].bind(*args, **kwargs)
        except TypeError as exc:
            raise self.error(f"{name}(): {exc}", name_token.column) from None
        # a parameter annotated int (polygamma's order n) is an attribute of the op: a literal
        column_of = dict(zip([*bound.signature.parameters][: len(args)] + list(kwargs), columns))
        for param, value in bound.arguments.items():
            if bound.signature.parameters[param].annotation is int and (type(value) is not int or value < 0):
                raise self.error(
                    f"{name}(): {param} must be a non-negative integer literal, got "
                    f"{'an expression' if isinstance(value, Expr) else repr(value)}",
                    column_of[param],
                )
        return self.build(f"{name}(...)", name_token.column, FUNCTIONS[name], *args, **kwargs)

    def parenthesized(self):
        opener = self.open_bracket()
        items = []
        is_tuple = self.peek().is_op(")")
        while not self.peek().is_op(")"):
            items.append(self.value()[0])
            if not self.peek().is_op(","):
                break
            self.advance()
            is_tuple = True
        self.close_bracket(opener, ")", "an operator, ',' or ')'")
        return (tuple(items) if is_tuple else items[0]), opener.column

    def subscript(self, base, column):
        opener = self.open_bracket()
        if not isinstance(base, Expr):
            raise self.error("only an expression can be indexed, not a literal", opener.column)
        if self.peek().is_op("]"):
            raise self.error("empty subscript", self.peek().column)
        items = []
        as_tuple = False
        while True:
            items.append(self.subscript_item())
            if not self.peek().is_op(","):
                break
            self.advance()
            as_tuple = True
            if self.peek().is_op("]"):
                break
        self.close_bracket(opener, "]", "',' or ']'")
        key = tuple(items) if as_tuple else items[0]
        return self.build("indexing", opener.column, operator.getitem, base, key)

    def subscript_item(self):
        if self.peek().is_op("..."):
            self.advance()
            return Ellipsis
        bounds = [None, None, None]
        if not self.peek().is_op(":"):
            bounds[0] = self.value()[0]
            if not self.peek().is_op(":"):
                return bounds[0]
        for part in (1, 2):
            if not self.peek().is_op(":"):
                break
            self.advance()
            if not self.peek().is_op(":", ",", "]"):
                bounds[part] = self.value()[0]
        return slice(*bounds)
