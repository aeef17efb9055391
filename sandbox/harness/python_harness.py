"""assay's Python test harness: a trusted judge process runs the tests, the program runs apart.

Standard library only (it runs under the image's python3). The host imports `discover` from this
file to know the tests before anything runs, so the count of tests never depends on the program.

In the sandbox the file runs twice, as the two processes of one step (`Step.judge`, see
sandbox/server.py):

- the judge, `python3 -I -S -B -c JUDGE_BOOTSTRAP judge <this file's source>`: the trusted side.
  It runs as another uid than the program wherever the sandbox can switch uids (else it makes
  itself non-dumpable), so the program can neither read its memory or descriptors
  (/proc/<pid>/mem, /proc/<pid>/fd), nor trace or signal it. Its code comes compiled on stdin
  (or as source on its command line), never from a file the program could rewrite. It reads
  {"nonce", "code", "tests", "strict", "prepared"} on stdin ("prepared": the tests compiled by
  the host, `compile_tests`, used when the judge runs the same Python version), runs the tests
  in its own interpreter and writes the records on its stdout, which the program cannot reach.
- the program, `python3 -I -S -B -c "import harness; harness.main()" program`: the untrusted side,
  as the sandbox user, importing this file (and its compiled copy) from the work directory.
  It only ever receives the program's code: it runs it as the module `solution`, then answers the
  judge's requests on descriptor 3 until the judge is done. Nothing of the tests (expected
  values, the nonce) ever enters this process, so there is nothing in it to steal or patch.

The channel between them (descriptor 3, both ways) carries data only: frames of a 4-byte
big-endian length and a JSON message. Values travel as plain data: None, bool, int, float, str,
list, and tagged objects for tuple, dict, set, frozenset, bytes, bytearray, complex, range,
Ellipsis, the standard library's Fraction, Decimal, deque, Counter, OrderedDict, defaultdict,
namedtuple, date/time types and dict views. Anything else of the program (its functions, classes,
other objects) reaches the tests as a handle (`Remote`): calls, attributes, items and iteration
go back to the program; comparisons, truth tests and arithmetic are decided here. With
`strict` (the default), a handle whose class defines such an operation itself (`__eq__`,
`__bool__`, `__sub__`...) fails the check instead of letting the program decide it; a handle
without one gets Python's default (identity for ==, True for a truth test, TypeError for <, +).
Callables and objects of the tests handed to the program (a key function) become handles the
other way: the program may call them, iterate them and read their public attributes.

Records (judge stdout): one line per result, `@@assay:<nonce> <json>`: {"t": "test", "i": index,
"ok": bool, "msg": str} per test (a test's later failure overrides its pass), {"t":
"compile_error", "msg"} when the program does not parse, {"t": "fatal", "msg"} when it raised at
import or exited during the tests, and {"t": "done", "n"} once every test has run. Without the
done record the host fails every unreported test.

Test formats (any mix, discovered by `discover`):
- `assert` statements outside test functions (MBPP lists, HumanEval's `check(candidate)` body):
  each statement is one test; it is evaluated without stopping the rest, and passes when every
  evaluation of it passed (asserts in loops) and it ran at least once.
- pytest-style functions `def test_*()` without parameters: one test each.
- `unittest.TestCase` subclasses: one test per `test*` method (setUp, subTest, skips as unittest).
"""

from __future__ import annotations

import _thread
import builtins
import marshal
import os
import sys
import types


class _OnFirstUse:
    """A module imported when first used: the program's process never parses tests, and `ast`
    costs 8 ms of every run's start."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> object:
        module = __import__(self._name)
        globals()[self._name] = module  # later lookups go straight to the module
        return getattr(module, attribute)


ast = _OnFirstUse("ast")
re = _OnFirstUse("re")


def _json_functions():  # noqa: ANN202 - (dumps, loads)
    """`dumps(value) -> str` and `loads(text, object_hook) -> value` on the C accelerator `_json`
    alone: `import json` also imports `re` and costs 6 ms at the start of each of the two
    processes of every run. The standard `json` module where `_json` lacks them."""
    try:
        import _json

        make_encoder, make_scanner = _json.make_encoder, _json.make_scanner
        ascii_string = _json.encode_basestring_ascii
    except (ImportError, AttributeError):
        import json

        return (
            lambda value: json.dumps(value, separators=(",", ":")),
            lambda text, hook=None: json.loads(text, object_hook=hook),
        )
    constants = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}

    def refuse(value: object) -> object:
        raise TypeError(f"{type(value).__name__} is not JSON data")

    def dumps(value: object) -> str:
        # markers, default, string encoder, indent, separators, sort_keys, skipkeys, allow_nan
        encode = make_encoder({}, refuse, ascii_string, None, ":", ",", False, False, True)
        return "".join(encode(value, 0))

    class Context:
        """What the C scanner reads: json.JSONDecoder's settings."""

        strict = True
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = staticmethod(constants.__getitem__)

        def __init__(self, hook) -> None:  # noqa: ANN001
            self.object_hook = hook

    scanners: dict = {}
    blank = " \t\n\r"

    def loads(text: str | bytes, hook=None) -> object:  # noqa: ANN001
        scan = scanners.get(hook)
        if scan is None:
            scan = scanners[hook] = make_scanner(Context(hook))
        if not isinstance(text, str):
            text = bytes(text).decode("utf-8")
        start = len(text) - len(text.lstrip(blank))
        try:
            value, end = scan(text, start)
        except StopIteration as stop:
            raise ValueError(f"malformed JSON at offset {stop.value}") from None
        if text[end:].strip(blank):
            raise ValueError(f"extra data after the JSON value at offset {end}")
        return value

    return dumps, loads


json_dumps, json_loads = _json_functions()
MARK = "@@assay:"
CHANNEL_FD = 3
MAX_FRAME = 1 << 30
TEST_CASE_BASES = ("TestCase", "IsolatedAsyncioTestCase")
TESTS_MODULE = "assay_tests"
# Operations through which a value can fake a comparison, a truth test or an arithmetic check:
# in strict mode a program's handle whose class defines one of them fails the check.
EQUALITY = ("__eq__", "__ne__")
ORDERING = ("__lt__", "__le__", "__gt__", "__ge__")
TRUTH = ("__bool__", "__len__")
ARITHMETIC = (
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
    "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__",
    "__neg__", "__pos__", "__abs__", "__round__", "__floor__", "__ceil__", "__trunc__",
)  # fmt: skip
GUARDED = (*EQUALITY, *ORDERING, *TRUTH, *ARITHMETIC, "__contains__")
# Modules whose functions, classes and the modules themselves, when the program hands them over
# (`from math import sqrt` used by the tests), resolve to the judge's own copy: pure computation,
# nothing that reaches the judge's files, processes or interpreter.
PURE_MODULES = frozenset(
    {
        "math", "cmath", "collections", "collections.abc", "itertools", "functools", "operator",
        "heapq", "bisect", "string", "re", "fractions", "decimal", "datetime", "statistics",
        "random", "typing", "numbers", "copy", "unicodedata", "textwrap", "calendar", "enum",
        "_heapq", "_bisect", "_operator", "_functools", "_collections", "_collections_abc",
        "_decimal", "_pydecimal", "_datetime", "_random", "_statistics", "_string", "_sre",
    }
)  # fmt: skip
PURE_BUILTINS = frozenset(
    {
        "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr",
        "complex", "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset", "hash",
        "hex", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min",
        "next", "object", "oct", "ord", "pow", "range", "repr", "reversed", "round", "set",
        "slice", "sorted", "str", "sum", "tuple", "zip",
        *(name for name, value in vars(builtins).items()
          if isinstance(value, type) and issubclass(value, BaseException)),
    }
)  # fmt: skip


# ---------------------------------------------------------------- discovery and rewriting


def _base_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def _is_test_case(node: ast.stmt) -> bool:
    return isinstance(node, ast.ClassDef) and any(_base_name(b) in TEST_CASE_BASES for b in node.bases)


def _is_test_function(node: ast.stmt) -> bool:
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or not node.name.startswith("test"):
        return False
    args = node.args
    required = len(args.posonlyargs) + len(args.args) - len(args.defaults)
    return required == 0 and all(d is not None for d in args.kw_defaults)


def _short(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SourceLines:
    """A source split into lines once, so the text of any node is a slice: linear in the source
    however many nodes are asked for (`ast.get_source_segment` re-splits the whole source on
    every call, which made preparing a 600 KB test source with 21 asserts take 83 s)."""

    def __init__(self, source: str) -> None:
        self.source = source
        # The tokenizer's line ends, as ast counts lines.
        self.starts = [0, *(match.end() for match in re.finditer(r"\r\n|\r|\n", source))]
        self._encoded: dict[int, bytes | None] = {}  # line -> its UTF-8 bytes (None: ASCII)

    def offset(self, lineno: int, col_offset: int) -> int:
        """The character offset in the source of (1-based line, UTF-8 byte column)."""
        index = lineno - 1
        start = self.starts[index]
        if index not in self._encoded:
            end = self.starts[index + 1] if index + 1 < len(self.starts) else len(self.source)
            line = self.source[start:end]
            self._encoded[index] = None if line.isascii() else line.encode()
        encoded = self._encoded[index]
        if encoded is None:
            return start + col_offset
        return start + len(encoded[:col_offset].decode("utf-8", "replace"))

    def segment(self, node: ast.AST) -> str:
        """The source text of `node` (empty when the node has no end position)."""
        end_lineno, end_col = getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None)
        if end_lineno is None or end_col is None:
            return ""
        begin = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        return self.source[begin : self.offset(end_lineno, end_col)]


def _statements(block: list[ast.stmt], index: int):  # noqa: ANN202 - yields (list, index, stmt)
    """The statement `block[index]` and every statement nested in it, each with the list holding
    it (so it can be replaced). Statements only: expressions (large literals) are never walked,
    so this costs the number of statements, not the size of the source."""
    stack = [(block, index)]
    while stack:
        holder, position = stack.pop()
        stmt = holder[position]
        yield holder, position, stmt
        inner = [getattr(stmt, field, None) for field in ("body", "orelse", "finalbody")]
        inner += [h.body for h in (*getattr(stmt, "handlers", ()), *getattr(stmt, "cases", ()))]
        for nested in inner:
            if isinstance(nested, list):
                stack += [(nested, i) for i in range(len(nested)) if isinstance(nested[i], ast.stmt)]


# CPython 3.11 counts ast.parse's recursion depth in state shared by all threads; when a garbage
# collection inside one parse runs a finalizer and another thread parses meanwhile, the count
# goes wrong and ast.parse raises "AST constructor recursion depth mismatch" (CPython gh-106905).
# verify_many prepares tests from many threads, so parses take turns. Re-entrant: a finalizer
# may itself parse.
_PARSE_LOCK = _thread.RLock()


def parse_tests(source: str) -> ast.Module:
    """ast.parse, one thread at a time (see _PARSE_LOCK)."""
    with _PARSE_LOCK:
        return ast.parse(source, "<tests>")


def _discover(source: str) -> tuple[ast.Module, list[dict], list[tuple[list, int, ast.Assert, int]]]:
    """Parse a test source and find its tests: the tree, the tests in order, and where each
    free-standing assert sits (its statement list, position, node, test index)."""
    tree = parse_tests(source)
    found: list[tuple[tuple[int, int], dict, tuple | None]] = []
    lines = SourceLines(source)
    for position, stmt in enumerate(tree.body):
        if _is_test_case(stmt):
            for member in stmt.body:  # type: ignore[attr-defined]
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef) and member.name.startswith(
                    "test"
                ):
                    name = f"{stmt.name}.{member.name}"  # type: ignore[attr-defined]
                    test = {"kind": "method", "name": name, "cls": stmt.name, "method": member.name}  # type: ignore[attr-defined]
                    found.append(((member.lineno, member.col_offset), test, None))
        elif _is_test_function(stmt):
            found.append(((stmt.lineno, stmt.col_offset), {"kind": "function", "name": stmt.name}, None))  # type: ignore[attr-defined]
        else:
            for block, index, node in _statements(tree.body, position):
                # `assert True, "..."` (HumanEval has a few) checks nothing: not a test.
                if isinstance(node, ast.Assert) and not isinstance(node.test, ast.Constant):
                    name = f"line {node.lineno}: {_short(lines.segment(node.test))}"
                    test = {"kind": "assert", "name": name, "line": node.lineno}
                    found.append(((node.lineno, node.col_offset), test, (block, index, node)))
    found.sort(key=lambda item: item[0])
    asserts = [(*where, index) for index, (_, _, where) in enumerate(found) if where is not None]
    return tree, [test for _, test, _ in found], asserts


def discover(source: str) -> list[dict]:
    """The tests of a test source, in order (see `prepare`), without rewriting it.

    Raises:
        SyntaxError: the test source does not parse.
    """
    return _discover(source)[1]


def _located(node: ast.AST, like: ast.AST) -> ast.AST:
    for name in ("lineno", "col_offset", "end_lineno", "end_col_offset"):
        setattr(node, name, getattr(like, name))
    return node


def prepare(source: str) -> tuple[list[dict], ast.Module]:
    """Find the tests in a test source and rewrite it for the judge; linear in the source's size.

    Every free-standing `assert test, message` becomes `_assay_assert(i, lambda: test, lambda:
    message)`, so a failed assert is recorded without stopping the rest.

    Returns:
        The tests in order, each {"kind": "assert" | "function" | "method", "name": ...} (methods
        also carry "cls" and "method", asserts "line"), and the rewritten module.

    Raises:
        SyntaxError: the test source does not parse.
    """
    tree, tests, asserts = _discover(source)
    for block, position, node, index in asserts:
        no_args = ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[],
                                kwarg=None, defaults=[])  # fmt: skip
        message = node.msg if node.msg is not None else _located(ast.Constant(None), node)
        arguments = [
            _located(ast.Constant(index), node),
            _located(ast.Lambda(no_args, node.test), node.test),
            _located(ast.Lambda(no_args, message), message),
        ]
        call = _located(ast.Call(_located(ast.Name("_assay_assert", ast.Load()), node), arguments, []), node)
        block[position] = _located(ast.Expr(call), node)
    return tests, tree


# ---------------------------------------------------------------- the channel (both sides)


class ChannelClosed(BaseException):
    """The other process closed the channel: it exited, crashed or was killed. A BaseException,
    so a test's `except Exception` cannot swallow the program's death."""


class ChannelError(BaseException):
    """The other side broke the protocol: a malformed frame, value or request."""


def _describe(error: BaseException) -> str:
    try:
        text = str(error)
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not stop the harness
        text = "<unprintable>"
    name = type(error).__name__
    return f"{name}: {text}"[:2000] if text else name


class Codec:
    """Values to plain JSON-able data and back, for one side of the channel.

    Args:
        export: Encodes an object of this side that is not plain data (a handle).
        resolve: Decodes a tag naming a handle or a reference; (tag, content) -> object.
    """

    BIG = 1 << 62  # larger ints travel as hex text (JSON readers and int->str limits)

    def __init__(self, export, resolve) -> None:  # noqa: ANN001
        self.export, self.resolve = export, resolve
        self._special = {
            set: lambda v: {"S": [self.encode(x) for x in v]},
            frozenset: lambda v: {"F": [self.encode(x) for x in v]},
            bytes: lambda v: {"B": v.decode("latin-1")},
            bytearray: lambda v: {"A": bytes(v).decode("latin-1")},
            complex: lambda v: {"X": [v.real, v.imag]},
            range: lambda v: {"R": [self.encode(v.start), self.encode(v.stop), self.encode(v.step)]},
            type(...): lambda v: {"L": 0},
            type({}.keys()): lambda v: {"K": [self.encode(x) for x in v]},
            type({}.values()): lambda v: {"V": [self.encode(x) for x in v]},
            type({}.items()): lambda v: {"W": [[self.encode(k), self.encode(x)] for k, x in v]},
        }
        self._hook = self._decode_object

    # -- encoding

    def encode(self, value: object) -> object:
        """`value` as JSON-able data; objects that are not plain data go through `export`."""
        kind = type(value)
        if kind is str or kind is bool or value is None or kind is float:
            return value
        if kind is int:
            return value if -self.BIG < value < self.BIG else {"I": hex(value)}  # type: ignore[operator]
        if kind is list:
            return [self.encode(x) for x in value]  # type: ignore[attr-defined]
        if kind is tuple:
            return {"T": [self.encode(x) for x in value]}  # type: ignore[attr-defined]
        if kind is dict:
            return {"D": [[self.encode(k), self.encode(x)] for k, x in value.items()]}  # type: ignore[attr-defined]
        special = self._special.get(kind)
        if special is not None:
            return special(value)
        return self._encode_other(kind, value)

    def _items(self, mapping: dict) -> list:
        return [[self.encode(k), self.encode(x)] for k, x in dict.items(mapping)]

    def _encode_other(self, kind: type, value: object) -> object:
        where = (getattr(kind, "__module__", ""), getattr(kind, "__qualname__", ""))
        if where == ("fractions", "Fraction"):
            return {"Q": [self.encode(value.numerator), self.encode(value.denominator)]}  # type: ignore[attr-defined]
        if where == ("decimal", "Decimal"):
            return {"M": str(value)}
        if where == ("collections", "deque"):
            return {"Y": [[self.encode(x) for x in value], value.maxlen]}  # type: ignore[attr-defined]
        if where == ("collections", "Counter"):
            return {"C": self._items(value)}  # type: ignore[arg-type]
        if where == ("collections", "OrderedDict"):
            return {"O": self._items(value)}  # type: ignore[arg-type]
        if where == ("collections", "defaultdict"):
            factory = value.default_factory  # type: ignore[attr-defined]
            name = getattr(factory, "__name__", None)
            factory_name = name if name in PURE_BUILTINS and getattr(builtins, name) is factory else None
            return {"G": [factory_name, self._items(value)]}  # type: ignore[arg-type]
        if where[0] == "datetime" and where[1] in ("datetime", "date", "time"):
            return {"Z": [where[1], value.isoformat()]}  # type: ignore[attr-defined]
        if where == ("datetime", "timedelta"):
            return {"Z": ["timedelta", [value.days, value.seconds, value.microseconds]]}  # type: ignore[attr-defined]
        if isinstance(value, tuple) and isinstance(getattr(kind, "_fields", None), tuple):
            fields = [str(field) for field in kind._fields]  # type: ignore[attr-defined]
            return {"N": [str(kind.__name__), fields, [self.encode(x) for x in tuple.__iter__(value)]]}
        # Other subclasses of plain types (an IntEnum member, a str subclass) travel as their value.
        for base, plain in ((int, int.__index__), (float, float.__float__),
                            (str, str.__str__), (bytes, bytes), (list, list), (tuple, tuple),
                            (dict, dict), (set, set), (frozenset, frozenset)):  # fmt: skip
            if isinstance(value, base):
                return self.encode(plain(value))  # type: ignore[operator]
        return self.export(value)

    def dumps(self, message: dict) -> bytes:
        """A message as the bytes of one frame's body."""
        return json_dumps(message).encode()

    # -- decoding

    def loads(self, data: bytes) -> dict:
        """One frame's body as a message, tags decoded; ChannelError when it is malformed."""
        try:
            message = json_loads(data, self._hook)
        except ChannelError:
            raise
        except Exception as err:  # noqa: BLE001 - anything malformed is a protocol error
            raise ChannelError(f"malformed message: {_describe(err)}") from None
        if not isinstance(message, dict):
            raise ChannelError("malformed message: not an object")
        return message

    def _decode_object(self, obj: dict) -> object:
        if len(obj) != 1:
            return obj  # a message envelope
        ((tag, content),) = obj.items()
        decoder = _DECODERS.get(tag)
        if decoder is None:
            if tag in ("H", "J", "P", "U", "E"):
                return self.resolve(tag, content)
            return obj  # a one-field envelope ({"value": ...})
        return decoder(content)


def _pairs(items: list) -> list[tuple]:
    return [(key, value) for key, value in items]


def _decode_datetime(content: list) -> object:
    import datetime

    kind, value = content
    if kind == "timedelta":
        return datetime.timedelta(days=value[0], seconds=value[1], microseconds=value[2])
    cls = {"datetime": datetime.datetime, "date": datetime.date, "time": datetime.time}[kind]
    return cls.fromisoformat(value)


def _decode_namedtuple(content: list) -> object:
    import collections

    name, fields, values = content
    key = (name, tuple(fields))
    cls = _NAMEDTUPLES.get(key)
    if cls is None:
        cls = _NAMEDTUPLES[key] = collections.namedtuple(name, fields, rename=True)  # type: ignore[misc]
    return cls(*values)


def _decode_decimal(content: str) -> object:
    import decimal

    return decimal.Decimal(content)


def _decode_fraction(content: list) -> object:
    import fractions

    return fractions.Fraction(*content)


def _collection(name: str):  # noqa: ANN202
    def decode(content: list) -> object:
        import collections

        cls = getattr(collections, name)
        if name == "deque":
            return cls(content[0], content[1])
        if name == "defaultdict":
            factory = getattr(builtins, content[0]) if content[0] in PURE_BUILTINS else None
            return cls(factory, _pairs(content[1]))
        return cls(dict(_pairs(content)))  # a Counter counts the elements of a list of pairs

    return decode


_NAMEDTUPLES: dict[tuple, type] = {}
_DECODERS = {
    "T": tuple,
    "D": lambda items: dict(_pairs(items)),
    "S": set,
    "F": frozenset,
    "I": lambda text: int(text, 16),
    "B": lambda text: text.encode("latin-1"),
    "A": lambda text: bytearray(text.encode("latin-1")),
    "X": lambda parts: complex(*parts),
    "R": lambda parts: range(*parts),
    "L": lambda _: ...,
    "K": lambda items: dict.fromkeys(items).keys(),
    "V": lambda items: dict(enumerate(items)).values(),
    "W": lambda items: dict(_pairs(items)).items(),
    "Q": _decode_fraction,
    "M": _decode_decimal,
    "Y": _collection("deque"),
    "C": _collection("Counter"),
    "O": _collection("OrderedDict"),
    "G": _collection("defaultdict"),
    "Z": _decode_datetime,
    "N": _decode_namedtuple,
}


class Channel:
    """Frames over a socket descriptor: request/reply, nested (a request may arrive while this
    side waits for its reply, and is served first).

    Args:
        fd: The descriptor (3 on both sides).
        codec: How values are encoded and decoded.
        serve: Answers a request of the other side: message -> reply.
    """

    def __init__(self, fd: int, codec: Codec, serve) -> None:  # noqa: ANN001
        self.fd, self.codec, self.serve = fd, codec, serve
        self.closed = False
        self.before_send: list = []  # callables run just before each request (piggybacked frees)

    def send(self, message: dict) -> None:
        """Send one message (a request or a reply)."""
        body = self.codec.dumps(message)
        data = memoryview(len(body).to_bytes(4, "big") + body)
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError as err:
            self.closed = True
            raise ChannelClosed(f"the channel closed: {err}") from None

    def _read(self, count: int) -> bytes:
        parts, missing = [], count
        while missing:
            try:
                chunk = os.read(self.fd, min(missing, 1 << 20))
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                raise ChannelClosed("the other process closed the channel")
            parts.append(chunk)
            missing -= len(chunk)
        return b"".join(parts)

    def receive(self) -> dict:
        """Read one message."""
        if self.closed:
            raise ChannelClosed("the other process closed the channel")
        size = int.from_bytes(self._read(4), "big")
        if size > MAX_FRAME:
            raise ChannelError(f"a frame of {size} bytes is too large")
        return self.codec.loads(self._read(size))

    def request(self, message: dict) -> dict:
        """Send a request and return its reply, serving the other side's requests meanwhile."""
        for hook in self.before_send:
            hook(message)
        self.send(message)
        while True:
            answer = self.receive()
            if "op" not in answer:
                return answer
            self.send(self.serve(answer))


def _exception(base: str, cls: type | None, text: str, args: list) -> BaseException:
    """An exception to raise on this side for one raised on the other."""
    kind = cls
    if kind is None:
        candidate = getattr(builtins, base, None) if base in PURE_BUILTINS else None
        kind = candidate if isinstance(candidate, type) and issubclass(candidate, BaseException) else None
    if kind is None:
        kind = RuntimeError
        args = [f"{base}: {text}"]
    try:
        error = kind(*args)
    except Exception:  # noqa: BLE001 - an exception type with a stricter constructor
        error = kind.__new__(kind)
        error.args = tuple(args)
    return error


def _builtin_base(cls: type) -> str:
    for klass in getattr(cls, "__mro__", ()):
        if getattr(builtins, getattr(klass, "__name__", ""), None) is klass:
            return klass.__name__
    return "Exception"


# ---------------------------------------------------------------- the program's side (untrusted)


def _defined_by_program(cls: type) -> list[str]:
    """The guarded operations that `cls` implements in code outside the standard library."""
    names = []
    stdlib = getattr(sys, "stdlib_module_names", ())
    for name in GUARDED:
        for klass in cls.__mro__:
            if name in klass.__dict__:
                module = str(getattr(klass, "__module__", "") or "").partition(".")[0]
                if klass is not object and module != "builtins" and module not in stdlib:
                    names.append(name)
                break
    return names


def program_main() -> None:
    """Serve the judge: load the program, then answer its requests until it closes the channel."""
    import math
    import operator

    handles: dict[int, object] = {}
    ids: dict[int, int] = {}
    flags: dict[type, list[str]] = {}
    counter = iter(range(1, 1 << 62))

    def export(value: object) -> dict:
        if type(value) is JudgeObject:  # one of the judge's, handed back
            return {"J": object.__getattribute__(value, "_assay_j")}
        if isinstance(value, types.ModuleType) and value.__name__ in PURE_MODULES:
            return {"U": value.__name__}
        module = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", None)
        if isinstance(module, str) and isinstance(qualname, str) and callable(value):
            if (module in PURE_MODULES or module == "builtins" and qualname in PURE_BUILTINS) and _lookup(
                sys.modules.get(module), qualname
            ) is value:
                return {"P": [module, qualname]}
        key = id(value)
        handle = ids.get(key)
        if handle is None:
            handle = next(counter)
            handles[handle], ids[key] = value, handle
        if isinstance(value, type) and issubclass(value, BaseException):
            parent = next((k for k in value.__mro__[1:] if k.__module__ != "builtins"), None)
            above = codec.encode(parent) if parent else None
            return {"E": [handle, value.__qualname__, _builtin_base(value), above]}
        cls = type(value)
        if cls not in flags:
            flags[cls] = _defined_by_program(cls)
        return {"H": [handle, getattr(cls, "__qualname__", "?"), flags[cls]]}

    def resolve(tag: str, content: object) -> object:
        if tag in ("H", "E"):
            handle = content[0] if isinstance(content, list) else None  # type: ignore[index]
            if handle not in handles:
                raise ChannelError(f"unknown program handle {handle}")
            return handles[handle]  # type: ignore[index]
        if tag == "J":
            return JudgeObject(content)  # type: ignore[arg-type]
        if tag == "U":
            return __import__(str(content))
        if tag == "P":
            module, qualname = content  # type: ignore[misc]
            return _lookup(__import__(module, fromlist=["_"]), qualname)
        raise ChannelError(f"unknown tag {tag}")

    codec = Codec(export, resolve)

    class JudgeObject:
        """A callable or object of the tests, living in the judge."""

        __slots__ = ("_assay_j",)

        def __init__(self, handle: int) -> None:
            object.__setattr__(self, "_assay_j", handle)

        def _ask(self, fn: str, *args: object, **kwargs: object) -> object:
            message = {"op": "do", "target": self._assay_j, "fn": fn, "args": codec.encode(list(args))}
            if kwargs:
                message["kwargs"] = codec.encode(kwargs)
            return ask(message)

        def __call__(self, *args: object, **kwargs: object) -> object:
            return self._ask("call", *args, **kwargs)

        def __getattr__(self, name: str) -> object:
            return self._ask("getattr", name)

        def __setattr__(self, name: str, value: object) -> None:
            self._ask("setattr", name, value)

        def __delattr__(self, name: str) -> None:
            self._ask("delattr", name)

        def __getitem__(self, key: object) -> object:
            return self._ask("getitem", key)

        def __setitem__(self, key: object, value: object) -> None:
            self._ask("setitem", key, value)

        def __delitem__(self, key: object) -> None:
            self._ask("delitem", key)

        def __iter__(self):  # noqa: ANN204
            return self._ask("iter")

        def __next__(self) -> object:
            return self._ask("next")

        def __len__(self) -> int:
            return self._ask("len")  # type: ignore[return-value]

        def __contains__(self, item: object) -> bool:
            return self._ask("contains", item)  # type: ignore[return-value]

        def __bool__(self) -> bool:
            return self._ask("bool")  # type: ignore[return-value]

        def __repr__(self) -> str:
            return self._ask("repr")  # type: ignore[return-value]

        def __str__(self) -> str:
            return self._ask("str")  # type: ignore[return-value]

        def __hash__(self) -> int:
            return self._ask("hash")  # type: ignore[return-value]

        def __eq__(self, other: object) -> bool:
            return self._ask("eq", other)  # type: ignore[return-value]

        def __lt__(self, other: object) -> bool:
            return self._ask("lt", other)  # type: ignore[return-value]

        def __le__(self, other: object) -> bool:
            return self._ask("le", other)  # type: ignore[return-value]

        def __gt__(self, other: object) -> bool:
            return self._ask("gt", other)  # type: ignore[return-value]

        def __ge__(self, other: object) -> bool:
            return self._ask("ge", other)  # type: ignore[return-value]

    def describe(error: BaseException) -> dict:
        cls = type(error)
        own = codec.encode(cls) if cls.__module__ != "builtins" else None
        try:
            args = codec.encode(list(error.args))
        except BaseException:  # noqa: BLE001
            args = [str(error.args)[:2000]]
        return {"error": [_builtin_base(cls), own, _describe(error), args]}

    reflected = {f"r{name}": (lambda op: lambda a, b: op(b, a))(getattr(operator, name))
                 for name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
                              "and_", "or_", "xor", "lshift", "rshift")}  # fmt: skip
    operations = {
        "call": lambda target, *a, **k: target(*a, **k),
        "getattr": getattr, "setattr": setattr, "delattr": delattr,
        "getitem": operator.getitem, "setitem": operator.setitem, "delitem": operator.delitem,
        "len": len, "iter": iter, "next": next, "repr": repr, "str": str, "bool": bool, "hash": hash,
        "format": format, "int": int, "float": float, "index": operator.index, "reversed": reversed,
        "round": round, "floor": math.floor, "ceil": math.ceil, "trunc": math.trunc,
        "contains": operator.contains, "isinstance": lambda cls, obj: isinstance(obj, cls),
        "issubclass": lambda cls, other: issubclass(other, cls),
        "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
        "ge": operator.ge, "neg": operator.neg, "pos": operator.pos, "abs": abs, "invert": operator.invert,
        "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
        "floordiv": operator.floordiv, "mod": operator.mod, "pow": operator.pow, "matmul": operator.matmul,
        "and_": operator.and_, "or_": operator.or_, "xor": operator.xor, "lshift": operator.lshift,
        "rshift": operator.rshift, **reflected,
    }  # fmt: skip
    solution = types.ModuleType("solution")
    solution.__file__ = "solution.py"

    def serve(message: dict) -> dict:
        for handle in message.get("free") or ():
            value = handles.pop(handle, None)
            if value is not None:
                ids.pop(id(value), None)
        op = message.get("op")
        try:
            if op == "global":
                name = message["name"]
                if not isinstance(name, str) or name not in solution.__dict__:
                    return {"missing": True}
                return {"value": codec.encode(solution.__dict__[name])}
            if op == "do":
                operation = operations[message["fn"]]
                target = handles[message["target"]]
                args, kwargs = message.get("args") or [], message.get("kwargs") or {}
                result = operation(target, *args, **kwargs)
                reply = {"value": codec.encode(result)}
                if message.get("back"):
                    reply["back"] = [codec.encode(args[i]) for i in message["back"]]
                return reply
            raise ChannelError(f"unknown request {op!r}")
        except ChannelClosed:
            raise
        except BaseException as err:  # noqa: BLE001 - SystemExit and friends go back to the judge
            return describe(err)
        finally:
            sys.stdout.flush()

    def ask(message: dict) -> object:
        reply = channel.request(message)
        if "error" in reply:
            base, own, text, args = reply["error"]
            raise _exception(base, None, text, args if isinstance(args, list) else [text])
        return reply.get("value")

    channel = Channel(CHANNEL_FD, codec, serve)
    sys.stdout = sys.stderr  # the program's prints go to the step's stderr, unbuffered enough
    try:
        load = channel.receive()
        program = compile(str(load.get("code", "")), "solution.py", "exec")
    except (ChannelClosed, ChannelError):
        os._exit(0)
    except (SyntaxError, ValueError) as err:
        channel.send({"compile_error": _describe(err)})
        os._exit(0)
    sys.modules["solution"] = solution
    sys.modules["__main__"] = solution
    try:
        exec(program, solution.__dict__)  # noqa: S102 - running the program is the point
        # Names of builtins the program redefines (MBPP has a `def sum(a, b)` to test).
        reply = {"loaded": True, "shadows": [name for name in solution.__dict__ if name in vars(builtins)]}
    except BaseException as err:  # noqa: BLE001 - SystemExit at import fails every test
        reply = {"fatal": f"the program raised {_describe(err)} when loaded"}
    sys.stdout.flush()
    try:
        channel.send(reply)
        while True:
            channel.send(serve(channel.receive()))
    except (ChannelClosed, ChannelError):
        pass
    os._exit(0)  # skip the program's atexit handlers and finalizers


def _lookup(root: object, qualname: str) -> object:
    value = root
    for part in qualname.split("."):
        value = getattr(value, part, None)
    return value


# ---------------------------------------------------------------- the judge's side (trusted)


def _not_dumpable() -> None:
    """Make this process non-dumpable: a process of the same uid can then no longer read its
    memory or descriptors through /proc, nor ptrace it (the judge also runs as another uid
    wherever the sandbox can switch)."""
    import ctypes

    pr_set_dumpable = 4
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_dumpable, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def _strict_failure(name: str, dunder: str) -> AssertionError:
    return AssertionError(
        f"strict check: a {name} value of the program reached a comparison, but its {dunder} is "
        "defined by the program, not by Python or the standard library"
    )


class _Proxy:
    """What a handle of the program's carries (the slots of the class `make_remote` builds)."""

    _assay_h: int  # the program's number for the object
    _assay_name: str  # its class's name, for messages
    _assay_flags: frozenset[str]  # the guarded operations its class defines itself


def make_remote(channel_ask, strict: bool):  # noqa: ANN001, ANN201 - returns the Remote class
    """The class of the program's objects as the tests see them: every operation goes to the
    program, except comparisons, truth and arithmetic, which strict mode decides here."""

    def forward(fn: str):  # noqa: ANN202
        def method(self: _Proxy, *args: object) -> object:
            return channel_ask(self, fn, args)

        method.__name__ = f"__{fn}__"
        return method

    def guarded(dunder: str, fn: str, default):  # noqa: ANN001, ANN202
        def method(self: _Proxy, *args: object) -> object:
            if not strict:
                return channel_ask(self, fn, args)
            if dunder in self._assay_flags:
                raise _strict_failure(self._assay_name, dunder)
            return default(self, *args)

        method.__name__ = dunder
        return method

    def not_implemented(self: _Proxy, *args: object) -> object:
        return NotImplemented

    def unsupported(operation: str):  # noqa: ANN202
        def method(self: _Proxy, *args: object) -> object:
            raise TypeError(f"bad operand type for {operation}: '{self._assay_name}'")

        return method

    def equal(self: _Proxy, other: object) -> object:
        if other is self:
            return True
        if not strict:
            return channel_ask(self, "eq", (other,))
        if "__eq__" in self._assay_flags:
            raise _strict_failure(self._assay_name, "__eq__")
        return NotImplemented

    def not_equal(self: _Proxy, other: object) -> object:
        if other is self:
            return False
        if not strict:
            return channel_ask(self, "ne", (other,))
        for dunder in EQUALITY:
            if dunder in self._assay_flags:
                raise _strict_failure(self._assay_name, dunder)
        return NotImplemented

    def truth(self: _Proxy) -> bool:
        if not strict:
            return channel_ask(self, "bool", ())  # type: ignore[return-value]
        for dunder in TRUTH:
            if dunder in self._assay_flags:
                raise _strict_failure(self._assay_name, dunder)
        return True

    def contains(self: _Proxy, item: object) -> bool:
        if not strict:
            return channel_ask(self, "contains", (item,))  # type: ignore[return-value]
        if "__contains__" in self._assay_flags:
            raise _strict_failure(self._assay_name, "__contains__")
        return any(element is item or element == item for element in self)

    def identity_hash(self: _Proxy) -> int:
        return channel_ask(self, "hash", ()) if not strict else object.__hash__(self)  # type: ignore[return-value]

    namespace: dict = {
        "__slots__": ("_assay_h", "_assay_name", "_assay_flags", "__weakref__"),
        "__eq__": equal, "__ne__": not_equal, "__bool__": truth, "__contains__": contains,
        "__hash__": identity_hash,
        "__call__": lambda self, *a, **k: channel_ask(self, "call", a, k),
        "__getattr__": lambda self, name: channel_ask(self, "getattr", (name,)),
        "__setattr__": lambda self, name, value: channel_ask(self, "setattr", (name, value)),
        "__delattr__": lambda self, name: channel_ask(self, "delattr", (name,)),
        "__instancecheck__": lambda self, obj: channel_ask(self, "isinstance", (obj,)),
        "__subclasscheck__": lambda self, cls: channel_ask(self, "issubclass", (cls,)),
        "__format__": lambda self, spec: channel_ask(self, "format", (spec,)),
        "__dir__": lambda self: [],
    }  # fmt: skip
    for fn in ("getitem", "setitem", "delitem", "len", "iter", "next", "repr", "str", "int", "float",
               "index", "reversed"):  # fmt: skip
        namespace[f"__{fn}__"] = forward(fn)
    for dunder in ORDERING:
        namespace[dunder] = guarded(dunder, dunder.strip("_"), not_implemented)
    for dunder in ARITHMETIC:
        fn = dunder.strip("_")
        fn = {"and": "and_", "or": "or_", "rand": "rand_", "ror": "ror_"}.get(fn, fn)
        binary = dunder not in ("__neg__", "__pos__", "__abs__", "__floor__", "__ceil__", "__trunc__")
        default = not_implemented if binary and dunder != "__round__" else unsupported(dunder)
        namespace[dunder] = guarded(dunder, fn, default)

    def release(self: _Proxy) -> None:
        _FREED.append(object.__getattribute__(self, "_assay_h"))

    namespace["__del__"] = release
    return type("Remote", (), namespace)


_FREED: list[int] = []  # handles of the program whose proxies died, released with the next request


# The judge's command line. Its stdin is the request marshalled by the host (trusted data: plain
# values, no JSON module to import), with the harness compiled (compiling 60 KB of source costs 7
# ms a run); another Python version compiles the source given after the script instead.
JUDGE_BOOTSTRAP = """\
import marshal, os, sys
chunks = []
while chunk := os.read(0, 1 << 20):
    chunks.append(chunk)
payload = marshal.loads(b"".join(chunks))
tag, code = payload.pop("harness")
if tag == sys.implementation.cache_tag:
    code = marshal.loads(code)
else:
    code = compile(sys.argv[2], "python_harness.py", "exec")
namespace = {"__name__": "assay_judge"}
exec(code, namespace)
namespace["judge_main"](payload)
"""


def judge_main(payload: dict | None = None) -> None:
    """Run the tests against the program's process and write the records.

    Args:
        payload: The request ({"nonce", "code", "tests", "strict", "prepared"}), when the
            caller has read stdin already (the bootstrap); else it is read here (marshalled).
            Stdin is closed either way.
    """
    if payload is None:
        payload = marshal.loads(_read_stdin())
    else:
        _close_stdin()
    out = os.dup(1)
    os.dup2(2, 1)  # the tests' prints go to stderr; records to `out` only
    prefix = f"\n{MARK}{payload.pop('nonce')} ".encode()

    def emit(record: dict) -> None:
        data = prefix + json_dumps(record).encode() + b"\n"
        while data:
            data = data[os.write(out, data) :]

    try:
        # Another uid already keeps the program out (the server says which uid it runs).
        if os.environ.get("ASSAY_PROGRAM_UID", str(os.getuid())) == str(os.getuid()):
            _not_dumpable()
    except Exception as err:  # noqa: BLE001 - never judge without the protection
        emit({"t": "fatal", "msg": f"the judge cannot protect itself: {_describe(err)}"})
        os._exit(0)
    tests, test_code = _tests_of(payload)
    strict = bool(payload.get("strict", True))
    uses_unittest = any(test["kind"] == "method" for test in tests)
    if uses_unittest:  # 20 ms to import: only when the tests need it
        import unittest

    # -- the judge's objects handed to the program: handles it may call, iterate and read
    exported: dict[int, object] = {}
    exported_ids: dict[int, int] = {}
    builtin_names = {id(value): name for name, value in vars(builtins).items() if name in PURE_BUILTINS}

    def export(value: object) -> dict:
        name = builtin_names.get(id(value))
        if name is not None:
            return {"P": ["builtins", name]}
        if isinstance(value, types.ModuleType) and value.__name__ in PURE_MODULES:
            return {"U": value.__name__}
        if isinstance(value, Remote):
            return {"H": [object.__getattribute__(value, "_assay_h")]}
        handle = exported_ids.get(id(value))
        if handle is None:
            handle = len(exported) + 1
            exported[handle], exported_ids[id(value)] = value, handle
        return {"J": handle}

    import weakref

    proxies: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
    mirrors: dict[int, type] = {}

    def resolve(tag: str, content: object) -> object:
        if tag == "H":
            handle, name, flags = content  # type: ignore[misc]
            if not isinstance(handle, int) or not isinstance(name, str) or not isinstance(flags, list):
                raise ChannelError("malformed handle")
            proxy = proxies.get(handle)
            if proxy is None:
                proxy = Remote.__new__(Remote)
                object.__setattr__(proxy, "_assay_h", handle)
                object.__setattr__(proxy, "_assay_name", name)
                object.__setattr__(proxy, "_assay_flags", frozenset(flags))
                proxies[handle] = proxy
            return proxy
        if tag == "E":  # a class of exceptions of the program: a class of the same shape here
            handle, qualname, base, parent = content  # type: ignore[misc]
            if handle not in mirrors:
                above = parent if isinstance(parent, type) else getattr(builtins, str(base), None)
                if not (isinstance(above, type) and issubclass(above, BaseException) and
                        (above is parent or base in PURE_BUILTINS)):  # fmt: skip
                    above = Exception
                short = str(qualname).rpartition(".")[2]
                shape = {"__module__": "solution", "__qualname__": str(qualname)}
                mirrors[handle] = type(short, (above,), shape)
            return mirrors[handle]
        if tag == "J":
            if content not in exported:
                raise ChannelError(f"unknown judge handle {content}")
            return exported[content]  # type: ignore[index]
        if tag == "U":
            if content not in PURE_MODULES:
                raise ChannelError(f"the program handed over module {content!r}, which the tests cannot use")
            return __import__(str(content), fromlist=["_"])
        if tag == "P":
            module, qualname = content  # type: ignore[misc]
            allowed = module in PURE_MODULES or module == "builtins" and qualname in PURE_BUILTINS
            value = _lookup(__import__(module, fromlist=["_"]), qualname) if allowed else None
            if value is None:
                raise ChannelError(f"the program handed over {module}.{qualname}, which the tests cannot use")
            return value
        raise ChannelError(f"unknown tag {tag}")

    codec = Codec(export, resolve)

    def tests_own(value: object) -> bool:
        """An instance of a class the tests defined (not a TestCase): the program may set its
        public attributes and items (a linked list the tests built, reversed in place)."""
        cls = type(value)
        if getattr(cls, "__module__", None) != TESTS_MODULE or isinstance(value, type):
            return False
        return not (uses_unittest and isinstance(value, unittest.TestCase))

    judge_operations = {
        "call": lambda target, *a, **k: target(*a, **k),
        "iter": iter, "next": next, "len": len, "getitem": lambda t, k: t[k],
        "contains": lambda t, x: x in t, "repr": repr, "str": str, "bool": bool, "hash": hash,
        "eq": lambda a, b: a == b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
        "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    }  # fmt: skip

    def serve(message: dict) -> dict:
        """A request of the program about an object of the tests."""
        try:
            if message.get("op") != "do" or message.get("target") not in exported:
                raise ChannelError("the program asked for something it was not handed")
            target, fn = exported[message["target"]], message.get("fn")
            args = message.get("args") or []
            kwargs = message.get("kwargs") or {}
            if fn in ("getattr", "setattr", "delattr"):
                name = args[0] if args else ""
                if not isinstance(name, str) or name.startswith("_"):
                    raise AttributeError(f"{name!r} of the tests' objects is not available to the program")
                if fn != "getattr" and not tests_own(target):
                    raise AttributeError("the program may only change objects the tests defined")
                result = getattr(builtins, fn)(target, *args)
            elif fn in ("setitem", "delitem"):
                if not tests_own(target):
                    raise TypeError("the program may only change objects the tests defined")
                result = getattr(target, f"__{fn}__")(*args)
            elif fn in judge_operations:
                result = judge_operations[fn](target, *args, **kwargs)
            else:
                raise ChannelError(f"operation {fn!r} on the tests' objects is not available")
            return {"value": codec.encode(result)}
        except (ChannelClosed, ChannelError):
            raise
        except BaseException as err:  # noqa: BLE001
            try:
                args = codec.encode(list(err.args))
            except BaseException:  # noqa: BLE001
                args = [_describe(err)]
            return {"error": [_builtin_base(type(err)), None, _describe(err), args]}

    channel = Channel(CHANNEL_FD, codec, serve)

    def piggyback_frees(message: dict) -> None:
        if _FREED:
            freed = [h for h in _FREED if h not in proxies]  # a handle seen again is alive again
            _FREED.clear()
            if freed:
                message["free"] = freed

    channel.before_send.append(piggyback_frees)

    def answer(reply: dict) -> object:
        if "error" in reply:
            base, own, text, args = reply["error"]
            own = own if isinstance(own, type) and issubclass(own, BaseException) else None
            raise _exception(str(base), own, str(text), args if isinstance(args, list) else [str(text)])
        if "value" not in reply:
            raise ChannelError("malformed reply")
        return reply["value"]

    def ask(proxy: object, fn: str, args: tuple, kwargs: dict | None = None) -> object:
        handle = object.__getattribute__(proxy, "_assay_h")
        back = [i for i, arg in enumerate(args) if type(arg) in (list, dict, set, bytearray)]
        message = {"op": "do", "target": handle, "fn": fn, "args": codec.encode(list(args))}
        if kwargs:
            message["kwargs"] = codec.encode(dict(kwargs))
        if back:
            message["back"] = back
        reply = channel.request(message)
        result = answer(reply)
        for index, state in zip(back, reply.get("back") or (), strict=False):
            _copy_into(args[index], state)  # the program changed an argument in place
        return result

    Remote = make_remote(ask, strict)  # noqa: N806 - a class

    def fetch_global(name: str) -> object:
        reply = channel.request({"op": "global", "name": name})
        if reply.get("missing"):
            raise KeyError(name)
        return answer(reply)

    shadows: set[str] = set()  # builtins the program redefined when it loaded

    class TestGlobals(dict):
        """The tests' namespace: a name the tests do not define is looked up in the program, as
        if the tests ran in the program's module (a builtin's name only when the program
        redefined it)."""

        def __missing__(self, name: str) -> object:
            if name in builtins.__dict__ and name not in shadows:
                raise KeyError(name)
            return fetch_global(name)

    class SolutionModule(types.ModuleType):
        """`import solution` / `from solution import f` in the tests."""

        def __getattr__(self, name: str) -> object:
            try:
                return fetch_global(name)
            except KeyError:
                raise AttributeError(name) from None

    sys.modules["solution"] = SolutionModule("solution")

    # -- load the program in its own process
    channel.send({"op": "load", "code": payload.pop("code")})
    try:
        loaded = channel.receive()
    except (ChannelClosed, ChannelError) as err:
        emit({"t": "fatal", "msg": f"the program exited when loaded ({_describe(err)})", "phase": "load"})
        emit({"t": "done", "n": len(tests)})
        os._exit(0)
    if "compile_error" in loaded:
        emit({"t": "compile_error", "msg": str(loaded["compile_error"])})
        emit({"t": "done", "n": len(tests)})
        os._exit(0)
    if "loaded" not in loaded:
        emit({"t": "fatal", "msg": str(loaded.get("fatal") or "the program did not load"), "phase": "load"})
        emit({"t": "done", "n": len(tests)})
        os._exit(0)

    if isinstance(loaded.get("shadows"), list):
        shadows.update(name for name in loaded["shadows"] if isinstance(name, str))
    status: dict[int, bool] = {}  # test index -> passed so far

    def record(index: int, ok: bool, message: str = "") -> None:
        before = status.get(index)
        if before is False or before is ok:
            return  # a failure is final; a repeated pass says nothing new
        status[index] = ok
        emit({"t": "test", "i": index, "ok": ok, "msg": message[:2000]})

    def program_gone(index: int | None, error: BaseException) -> None:
        """The program died: fail the test that was running and stop without a done record."""
        message = f"the program exited during the tests ({_describe(error)})"
        if index is not None:
            record(index, False, message)
        emit({"t": "fatal", "msg": message})
        os._exit(0)

    def assert_statement(index: int, test: types.FunctionType, message: types.FunctionType) -> None:
        try:
            ok = bool(test())
            detail = "" if ok else str(message() or f"assertion failed: {tests[index]['name']}")
        except (ChannelClosed, ChannelError) as err:
            program_gone(index, err)
        except BaseException as err:  # noqa: BLE001 - SystemExit and friends fail the test
            ok, detail = False, _describe(err)
        record(index, ok, detail)

    class Result(unittest.TestResult if uses_unittest else object):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.problems: list[str] = []
            self.gone: BaseException | None = None

        def _problem(self, err: tuple) -> None:
            if isinstance(err[1], ChannelClosed | ChannelError):
                self.gone = err[1]
            self.problems.append(_describe(err[1]))

        def addError(self, test, err) -> None:  # noqa: ANN001, N802
            self._problem(err)

        def addFailure(self, test, err) -> None:  # noqa: ANN001, N802
            self._problem(err)

        def addSubTest(self, test, subtest, err) -> None:  # noqa: ANN001, N802
            if err is not None:
                self._problem(err)
                self.problems[-1] = f"{subtest._subDescription()}: {self.problems[-1]}"

        def addSkip(self, test, reason) -> None:  # noqa: ANN001, N802
            self.problems.append(f"skipped: {reason}")

        def addExpectedFailure(self, test, err) -> None:  # noqa: ANN001, N802
            pass

        def addUnexpectedSuccess(self, test) -> None:  # noqa: ANN001, N802
            self.problems.append("unexpected success")

    namespace = TestGlobals(_assay_assert=assert_statement, __name__=TESTS_MODULE, __file__="tests.py")
    try:
        exec(test_code, namespace)  # noqa: S102
    except (ChannelClosed, ChannelError) as err:
        program_gone(None, err)
    except BaseException as err:  # noqa: BLE001 - a broken test module fails the tests not yet reached
        emit({"t": "fatal", "msg": f"the tests stopped: {_describe(err)}"})
    for index, test in enumerate(tests):
        gone = None
        if test["kind"] == "function":
            function = dict.get(namespace, test["name"])
            try:
                if not callable(function):
                    raise NameError(f"test function {test['name']} is not defined")
                outcome = function()
                if type(outcome) is types.CoroutineType:
                    import asyncio

                    asyncio.run(outcome)
                ok, detail = True, ""
            except (ChannelClosed, ChannelError) as err:
                ok, detail, gone = False, "", err
            except BaseException as err:  # noqa: BLE001
                ok, detail = False, _describe(err)
        elif test["kind"] == "method":
            cls = dict.get(namespace, test["cls"])
            try:
                if not (isinstance(cls, type) and issubclass(cls, unittest.TestCase)):
                    raise NameError(f"{test['cls']} is not a unittest.TestCase class")
                result = Result()
                unittest.TestSuite([cls(test["method"])]).run(result)  # the suite runs setUpClass
                ok, detail = (not result.problems and result.testsRun == 1), "; ".join(result.problems)
                gone = result.gone
            except (ChannelClosed, ChannelError) as err:
                ok, detail, gone = False, "", err
            except BaseException as err:  # noqa: BLE001
                ok, detail = False, _describe(err)
        else:
            if index not in status:
                record(index, False, "not reached")
            continue
        if gone is not None:
            program_gone(index, gone)
        record(index, ok, detail)
    emit({"t": "done", "n": len(tests)})
    os._exit(0)


def compile_tests(source: str) -> tuple[list[dict], types.CodeType]:
    """The tests of a source and their code as the judge runs it (`prepare`, then compile).

    Raises:
        SyntaxError: the test source does not parse.
    """
    tests, tree = prepare(source)
    with _PARSE_LOCK:  # compiling a tree converts it back, with the same shared depth counter
        return tests, compile(tree, "tests.py", "exec")


def _tests_of(payload: dict) -> tuple[list[dict], types.CodeType]:
    """The tests and their code: compiled by the host when it runs the same Python version
    (parsing and compiling a large test source is the host's work, not the sandbox's), else
    prepared here from the source."""
    prepared = payload.pop("prepared", None)
    if isinstance(prepared, list) and len(prepared) == 3 and prepared[0] == sys.implementation.cache_tag:
        return prepared[2], marshal.loads(prepared[1])
    return compile_tests(payload["tests"])


def _copy_into(target: object, state: object) -> None:
    """Give a list, dict, set or bytearray of the tests the state the program left it in."""
    if type(target) is list and type(state) is list:
        target[:] = state  # type: ignore[index]
    elif type(target) is bytearray and type(state) is bytearray:
        target[:] = state  # type: ignore[index]
    elif type(target) is dict and type(state) is dict or type(target) is set and type(state) is set:
        target.clear()  # type: ignore[attr-defined]
        target.update(state)  # type: ignore[attr-defined]


def _read_stdin() -> bytes:
    chunks = []
    while chunk := os.read(0, 1 << 20):
        chunks.append(chunk)
    _close_stdin()
    return b"".join(chunks)


def _close_stdin() -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def main() -> None:
    """Run as the judge or as the program's process (the first argument says which)."""
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "judge":
        judge_main()
    elif role == "program":
        program_main()
    else:
        sys.exit("usage: python3 -I -S -B harness.py program  |  python3 -I -S -B -c <harness> judge")


if __name__ == "__main__":
    main()
