"""Plain data and NumPy arrays out of a pickle stream, without unpickling it.

:func:`read_pickled_data` interprets the opcodes of a pickle (protocols 0-5, as
:func:`pickletools.genops` decodes them) with a stack machine of its own that can only build
``None``, booleans, ints, floats, strings, bytes, lists, tuples, dicts and NumPy arrays of
numeric dtypes. It never imports or calls anything a stream names: the globals a stream may
name are the handful NumPy and Python use to pickle arrays and bytes, and each stands for a
fixed action here (``numpy.core.multiarray._reconstruct`` + ``BUILD`` -> an array viewing
the stream's own bytes; ``numpy.dtype`` -> a numeric dtype; ``_codecs.encode(str,
"latin1")`` and ``bytes()`` -> bytes; ``numpy.core.numeric._frombuffer`` -> an array,
protocol 5's form).
Every other opcode (persistent ids, extension codes, ``INST``/``OBJ``/``NEWOBJ``, sets) and
every other global is refused with :class:`PickleDataError`.

Memory: arrays view the bytes objects of the stream, or the bytes a string of the stream is
turned into, once however often it is named (all such bytes together at most the stream's
length + 1 MiB); a stream runs at most :data:`MAX_OPCODES` opcodes, each of which makes at
most one object. So what is built stays within a small multiple of the stream's length.
Error messages name the types of refused values, never their ``repr``.
"""

from __future__ import annotations

import pickletools
import re

import numpy as np

from .errors import first_line

__all__ = ["PickleDataError", "read_pickled_data"]

_PLAIN = (type(None), bool, int, float, str, bytes)
_NUMERIC_DTYPE = re.compile(r"[<>|=]?(?:[iu][1248]|f[248]|b1)")
_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}
_FROMBUFFER = {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}
_EMPTY_BYTES = {("__builtin__", "bytes"), ("builtins", "bytes")}  # how b"" is pickled at 0-2
_ALLOWED = _RECONSTRUCT | _FROMBUFFER | _EMPTY_BYTES | {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
_MAX_DIMS = 32
_HIGHEST_PROTOCOL = 5  # pickle.HIGHEST_PROTOCOL of the Pythons this project runs on
MAX_OPCODES = 1 << 20  # an official batch takes ~40,000; each opcode may make one object
#: Opcodes that push their (decoded) argument as a value; any other opcode with an argument
#: (INST, PERSID, EXT1, ...) is refused, not taken for data.
_DATA = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT",
                   "BINFLOAT", "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE",
                   "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES",
                   "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"})


class PickleDataError(ValueError):
    """The stream holds something other than plain data and numeric arrays, or is broken."""


class _Global:
    def __init__(self, module: str, name: str):
        self.key = (module, name)


class _ArrayStub:
    """``_reconstruct(ndarray, ...)`` before ``BUILD`` gives it its contents."""


class _Dtype:
    def __init__(self, dtype: np.dtype):
        self.dtype = dtype


def read_pickled_data(raw: bytes):
    """The object a pickle stream describes, built from plain data and arrays only; raises
    :class:`PickleDataError` (its text says which opcode or global is refused)."""
    return _Machine(len(raw)).run(raw)


class _Machine:
    """The stack, the marks and the memo of one stream; ``budget``: bytes that turning
    strings into bytes may still make (a string is encoded once, however often the stream
    names it, and all of them together make at most the stream's size + 1 MiB)."""

    def __init__(self, size: int):
        self.stack: list = []
        self.marks: list[list] = []
        self.memo: dict = {}
        self.budget = size + (1 << 20)
        self.encoded: dict[int, tuple[str, bytes]] = {}  # id(str) -> (str, its latin1 bytes)
        self.unbuilt = 0  # arrays made by _reconstruct and not yet built

    def run(self, raw: bytes):
        try:
            for count, (opcode, arg, position) in enumerate(pickletools.genops(raw)):
                if opcode.name == "FRAME" and position + 9 + arg > len(raw):
                    raise PickleDataError("a frame runs past the end of the stream "
                                          "(truncated)")
                if count >= MAX_OPCODES:
                    raise PickleDataError(f"more than {MAX_OPCODES} opcodes (a CIFAR-10 batch "
                                          f"takes some 40,000)")
                if opcode.name == "STOP":
                    if len(self.stack) != 1 or self.marks:
                        raise PickleDataError("the stream ends with a malformed stack")
                    if self.unbuilt:
                        raise PickleDataError("a numpy array is never given its contents "
                                              "(_reconstruct without BUILD)")
                    return _finished(self.stack[0])
                self.step(opcode.name, arg)
        except PickleDataError:
            raise
        except (ValueError, TypeError, IndexError, KeyError, OverflowError, UnicodeError,
                RecursionError) as err:
            first = first_line(err)
            raise PickleDataError(f"a broken pickle stream ({first})") from None
        raise PickleDataError("the stream has no STOP opcode (truncated)")

    def pop_mark(self) -> list:
        if not self.marks:
            raise PickleDataError("an opcode needs a MARK that is not there")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def step(self, name: str, arg) -> None:
        stack = self.stack
        if name == "PROTO" and not 0 <= arg <= _HIGHEST_PROTOCOL:
            raise PickleDataError(f"pickle protocol {arg} is not one Python reads")
        if name in ("PROTO", "FRAME"):
            return
        if name == "MARK":
            self.marks.append(stack)
            self.stack = []
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            if not 0 <= arg < 1 << 32:  # what LONG_BINPUT can say; huge text indices
                raise PickleDataError("a memo index outside 0..2**32-1 is not allowed")
            self.memo[arg] = stack[-1]   # (multiples of 2**61-1) all hash alike
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            value = self.memo[arg]
            stack.append(value.array if type(value) is _Built else value)
        elif name == "GLOBAL":
            module, _, attr = arg.partition(" ")
            stack.append(_global(module, attr))
        elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
            stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
        elif name in _DATA:
            if not isinstance(arg, (*_PLAIN, bytearray)):
                raise PickleDataError(f"opcode {name} with an unexpected argument")
            if type(arg) is int and abs(arg) >= 1 << 64:
                raise PickleDataError("an integer beyond 64 bits is not allowed")
            stack.append(arg)
        elif name in ("EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE"):
            stack.append({"EMPTY_DICT": dict, "EMPTY_LIST": list, "EMPTY_TUPLE": tuple}[name]())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(name[-1])
            if len(stack) < count:
                raise PickleDataError(f"{name} on a short stack")
            items = tuple(stack[-count:])
            del stack[-count:]
            stack.append(items)
        elif name in ("TUPLE", "LIST", "DICT"):
            items = self.pop_mark()
            self.stack.append(tuple(items) if name == "TUPLE" else items if name == "LIST"
                              else _dict_of(items))
        elif name == "APPEND":
            value = stack.pop()
            _list(stack[-1]).append(value)
        elif name == "APPENDS":
            items = self.pop_mark()
            _list(self.stack[-1]).extend(items)
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            _dict(stack[-1])[_key(key)] = value
        elif name == "SETITEMS":
            items = self.pop_mark()
            _dict(self.stack[-1]).update(_dict_of(items))
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "STACK_GLOBAL":
            attr, module = stack.pop(), stack.pop()
            if not (isinstance(module, str) and isinstance(attr, str)):
                raise PickleDataError("STACK_GLOBAL of names that are not strings")
            stack.append(_global(module, attr))
        elif name == "REDUCE":
            args, function = stack.pop(), stack.pop()
            stack.append(self.reduce(function, args))
            self.unbuilt += type(stack[-1]) is _ArrayStub
        elif name == "BUILD":
            state = stack.pop()
            if type(stack[-1]) is _ArrayStub and type(state) is tuple and len(state) == 5 \
                    and isinstance(state[4], str):  # Python 2's str: the array's bytes
                state = (*state[:4], self.latin1(state[4]))
            self.unbuilt -= type(stack[-1]) is _ArrayStub
            stack[-1] = _build(stack[-1], state)
        else:
            raise PickleDataError(f"opcode {name} is not allowed")

    def latin1(self, text: str) -> bytes:
        """``text`` as latin1 bytes, made once per string object and counted against the
        budget."""
        known = self.encoded.get(id(text))
        if known is not None and known[0] is text:
            return known[1]
        self.budget -= len(text)
        if self.budget < 0:
            raise PickleDataError("the stream makes more bytes than it holds (strings "
                                  "turned into bytes again and again)")
        data = text.encode("latin1")
        self.encoded[id(text)] = (text, data)
        return data

    def reduce(self, function, args):
        if isinstance(function, _Global) and function.key == ("_codecs", "encode"):
            if not (type(args) is tuple and len(args) == 2 and isinstance(args[0], str)
                    and args[1] in ("latin1", "latin-1")):
                raise PickleDataError(f"_codecs.encode of {_kinds(args)} is not allowed (only "
                                      f"(str, 'latin1'))")
            return self.latin1(args[0])
        if isinstance(function, _Global) and function.key in _FROMBUFFER and \
                type(args) is tuple and args and isinstance(args[0], str):
            args = (self.latin1(args[0]), *args[1:])
        return _reduce(function, args)


def _kinds(value) -> str:
    """What ``value`` is, in a few words, never its ``repr`` (which a stream can make
    unboundedly long or deep)."""
    if type(value) is tuple:
        return "(" + ", ".join(type(v).__name__ for v in value[:4]) + \
            (", ..." if len(value) > 4 else "") + ")"
    return type(value).__name__


def _finished(value):
    if type(value) is _Built:
        value = value.array
    _check_plain(value)
    return value


def _check_plain(value) -> None:
    """PickleDataError when a stand-in of this module (an array used before it was
    built, a dtype, a global) is anywhere in ``value`` (visited once per object)."""
    seen, todo = set(), [value]
    while todo:
        item = todo.pop()
        if isinstance(item, (_Global, _ArrayStub, _Dtype)):
            raise PickleDataError("the stream's result is not plain data (an array used "
                                  "before it was built, a dtype or a global)")
        if isinstance(item, (list, tuple, dict)) and id(item) not in seen:
            seen.add(id(item))
            todo.extend(item.values() if isinstance(item, dict) else item)
    return value


def _list(value) -> list:
    if type(value) is not list:
        raise PickleDataError("APPEND to something that is not a list")
    return value


def _dict(value) -> dict:
    if type(value) is not dict:
        raise PickleDataError("SETITEM on something that is not a dict")
    return value


def _key(key):
    if not isinstance(key, (type(None), bool, int, float, str, bytes)):
        raise PickleDataError("a dict key that is not a string or a number")
    return key


def _dict_of(items: list) -> dict:
    if len(items) % 2:
        raise PickleDataError("a dict with an odd number of keys and values")
    return {_key(items[i]): items[i + 1] for i in range(0, len(items), 2)}


def _global(module: str, attr: str) -> _Global:
    if (module, attr) not in _ALLOWED:
        raise PickleDataError(f"refusing to load global {module[:80]}.{attr[:80]} (only "
                              f"NumPy arrays, lists, dicts, strings and numbers are read)")
    return _Global(module, attr)


def _reduce(function, args):
    """What calling an allowed global stands for (``_codecs.encode`` is the machine's)."""
    if not isinstance(function, _Global) or type(args) is not tuple:
        raise PickleDataError("REDUCE of something other than an allowed global")
    key = function.key
    if key in _RECONSTRUCT:
        if len(args) != 3 or not (isinstance(args[0], _Global)
                                  and args[0].key == ("numpy", "ndarray")):
            raise PickleDataError("numpy _reconstruct of a class other than ndarray")
        if args[2] not in ("b", b"b"):  # the typecode numpy writes (and reads)
            raise PickleDataError("numpy _reconstruct with a typecode other than 'b'")
        return _ArrayStub()
    if key == ("numpy", "dtype"):
        if not args or not isinstance(args[0], str) or not _NUMERIC_DTYPE.fullmatch(args[0]):
            shown = repr(args[0])[:20] if args and isinstance(args[0], str) else _kinds(args)
            raise PickleDataError(f"numpy dtype {shown} is not allowed (only integers, "
                                  f"floats and bools)")
        return _Dtype(np.dtype(args[0]))
    if key in _EMPTY_BYTES:
        if args:
            raise PickleDataError("bytes() is allowed only without arguments")
        return b""
    if key in _FROMBUFFER:
        if len(args) != 4 or not isinstance(args[1], _Dtype) or args[3] not in ("C", "F"):
            raise PickleDataError("numpy _frombuffer with unexpected arguments")
        return _array(args[0], args[1], args[2], args[3] == "F")
    raise PickleDataError(f"{key[0]}.{key[1]} cannot be called")


def _build(target, state):
    """``target`` given ``state``: a dtype with its byte order, or the array a stub
    stands for (the stub, memoized before BUILD, then stands for the array)."""
    if isinstance(target, _Dtype):
        if not (type(state) is tuple and len(state) >= 2 and state[0] in (3, 4)
                and isinstance(state[1], str) and state[1] in ("<", ">", "|", "=")):
            raise PickleDataError("a numpy dtype state that is not numpy's")
        # as numpy's dtype.__setstate__: "=" and "|" (not applicable) mean the native order
        target.dtype = target.dtype.newbyteorder("=" if state[1] in "=|" else state[1])
        return target
    if type(target) is not _ArrayStub:
        raise PickleDataError("BUILD of something other than a numpy array or dtype")
    if not (type(state) is tuple and len(state) == 5 and type(state[0]) is int
            and state[0] in (0, 1)):
        raise PickleDataError("a numpy array state that is not numpy's")
    _, shape, dtype, fortran, raw = state
    if not isinstance(dtype, _Dtype):
        raise PickleDataError("a numpy array state without a dtype")
    if type(fortran) not in (bool, int) or type(raw) is not bytes:  # as numpy requires
        raise PickleDataError("a numpy array state whose order flag or data is not numpy's")
    target.__class__ = _Built
    target.array = _array(raw, dtype, shape, bool(fortran))
    return target.array


class _Built(_ArrayStub):
    array: np.ndarray


def _array(raw, dtype: _Dtype, shape, fortran: bool) -> np.ndarray:
    """An array of ``shape`` (a tuple, as numpy requires) viewing ``raw`` (bytes or a
    bytearray), whose length must be exactly what the shape and dtype take."""
    if not isinstance(raw, (bytes, bytearray)):
        raise PickleDataError("an array's data is not bytes (an array of Python objects?)")
    if type(shape) is not tuple or len(shape) > _MAX_DIMS or \
            not all(type(d) is int and d >= 0 for d in shape):
        raise PickleDataError("an array shape must be whole numbers >= 0")
    count = 1
    for d in shape:
        count *= d
    if count * dtype.dtype.itemsize != len(raw):
        raise PickleDataError(f"an array of {list(shape)[:8]} {dtype.dtype} needs "
                              f"{count * dtype.dtype.itemsize} bytes, the stream gives "
                              f"{len(raw)}")
    return np.frombuffer(raw, dtype=dtype.dtype, count=count).reshape(
        shape, order="F" if fortran else "C")
