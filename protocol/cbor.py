"""A strict, portable CBOR (RFC 8949) subset: the only CBOR the protocol speaks.

Why not cbor2 here: this module must run unmodified on MicroPython, and a decoder facing
the network must refuse what cbor2 accepts by default (indefinite lengths, duplicate map
keys, tags, floats, non-shortest integers). The tests check every encoding against cbor2.

Supported: unsigned and negative integers (64-bit), byte and text strings, arrays, maps,
false/true/null, and a top-level tag where the caller allows it (COSE). Encoding is core
deterministic (RFC 8949 4.2.1): shortest forms, map keys sorted.
"""

from ..firmware.errors import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_INT = (1 << 64) - 1
DEFAULT_MAX_SIZE = 4096
DEFAULT_MAX_DEPTH = 8


class DecodeError(ProtocolError):
    """The bytes are not strict protocol CBOR."""


def _head(major: int, value: int) -> bytes:
    top = major << 5
    if value < 24:
        return bytes((top | value,))
    if value < 0x100:
        return bytes((top | 24, value))
    if value < 0x10000:
        return bytes((top | 25,)) + value.to_bytes(2, "big")
    if value < 0x100000000:
        return bytes((top | 26,)) + value.to_bytes(4, "big")
    return bytes((top | 27,)) + value.to_bytes(8, "big")


def encode(obj: "Any") -> bytes:
    """Encode obj (int, bytes, str, list, tuple, dict, bool, None) as core deterministic CBOR."""
    out = []  # type: list[bytes]
    _encode_into(obj, out)
    return b"".join(out)


def _encode_into(obj: "Any", out: "list[bytes]") -> None:
    if obj is None:
        out.append(b"\xf6")
    elif obj is True:
        out.append(b"\xf5")
    elif obj is False:
        out.append(b"\xf4")
    elif isinstance(obj, int):
        if obj >= 0:
            if obj > MAX_INT:
                raise ProtocolError("integer too large for CBOR: %d" % obj)
            out.append(_head(0, obj))
        else:
            if -1 - obj > MAX_INT:
                raise ProtocolError("integer too small for CBOR: %d" % obj)
            out.append(_head(1, -1 - obj))
    elif isinstance(obj, bytes):
        out.append(_head(2, len(obj)))
        out.append(obj)
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        out.append(_head(3, len(raw)))
        out.append(raw)
    elif isinstance(obj, (list, tuple)):
        out.append(_head(4, len(obj)))
        for item in obj:
            _encode_into(item, out)
    elif isinstance(obj, Tagged):
        out.append(_head(6, obj.tag))
        _encode_into(obj.value, out)
    elif isinstance(obj, dict):
        # Core deterministic encoding (RFC 8949 4.2.1): keys sorted by their encoded bytes.
        pairs = sorted((encode(key), value) for key, value in obj.items())
        out.append(_head(5, len(pairs)))
        for key_bytes, value in pairs:
            out.append(key_bytes)
            _encode_into(value, out)
    else:
        raise ProtocolError("cannot encode %s as protocol CBOR" % type(obj).__name__)


class _Reader:
    __slots__ = ("data", "pos", "max_depth", "tags")

    def __init__(self, data: bytes, max_depth: int, tags: "tuple[int, ...]") -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth
        self.tags = tags

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise DecodeError("truncated: needs %d bytes at offset %d" % (n, self.pos))
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def head(self) -> "tuple[int, int]":
        start = self.pos
        initial = self.take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if major == 7:
            return major, info
        if info < 24:
            return major, info
        if info > 27:
            raise DecodeError("indefinite or reserved length at offset %d" % start)
        size = 1 << (info - 24)
        value = int.from_bytes(self.take(size), "big")
        if value < (24 if size == 1 else 1 << (4 * size)):
            raise DecodeError("non-shortest integer encoding at offset %d" % start)
        return major, value

    def item(self, depth: int) -> "Any":
        if depth > self.max_depth:
            raise DecodeError("nesting deeper than %d" % self.max_depth)
        start = self.pos
        major, value = self.head()
        if major == 0:
            return value
        if major == 1:
            return -1 - value
        if major == 2:
            return bytes(self.take(value))
        if major == 3:
            try:
                return str(self.take(value), "utf-8")
            except UnicodeError:
                raise DecodeError("text string at offset %d is not UTF-8" % start) from None
        if major == 4:
            self._check_count(value, start)
            return [self.item(depth + 1) for _ in range(value)]
        if major == 5:
            self._check_count(value, start)
            return self._map(value, depth, start)
        if major == 6:
            if value not in self.tags or depth > 0:
                raise DecodeError("tag %d at offset %d is not allowed here" % (value, start))
            return Tagged(value, self.item(depth + 1))
        if value == 20:
            return False
        if value == 21:
            return True
        if value == 22:
            return None
        raise DecodeError("simple value or float at offset %d is not allowed" % start)

    def _check_count(self, count: int, start: int) -> None:
        # Every element takes at least one byte: refuse counts the input cannot hold
        # before allocating anything for them.
        if count > len(self.data) - self.pos:
            raise DecodeError("container at offset %d claims %d items" % (start, count))

    def _map(self, count: int, depth: int, start: int) -> "dict[Any, Any]":
        result = {}  # type: dict[Any, Any]
        for _ in range(count):
            key = self.item(depth + 1)
            if not isinstance(key, (int, str)) or isinstance(key, bool):
                raise DecodeError("map at offset %d has a key that is not int or text" % start)
            if key in result:
                raise DecodeError("map at offset %d repeats key %r" % (start, key))
            result[key] = self.item(depth + 1)
        return result


class Tagged:
    """A tagged item (only at the top level, only for tags the caller allows: COSE's)."""

    __slots__ = ("tag", "value")

    def __init__(self, tag: int, value: "Any") -> None:
        self.tag = tag
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tagged) and (self.tag, self.value) == (other.tag, other.value)


def decode(data: bytes, max_size: int = DEFAULT_MAX_SIZE, max_depth: int = DEFAULT_MAX_DEPTH,
           tags: "tuple[int, ...]" = ()) -> "Any":
    """Decode exactly one strict CBOR item from data, refusing anything outside the subset.
    A tag is accepted only at the top level and only if it is in `tags`."""
    if not isinstance(data, (bytes, bytearray)):
        raise DecodeError("expected bytes, got %s" % type(data).__name__)
    if len(data) > max_size:
        raise DecodeError("message of %d bytes exceeds the %d-byte cap" % (len(data), max_size))
    if not data:
        raise DecodeError("empty message")
    reader = _Reader(bytes(data), max_depth, tags)
    value = reader.item(0)
    if reader.pos != len(data):
        raise DecodeError("%d trailing bytes after the message" % (len(data) - reader.pos))
    return value
