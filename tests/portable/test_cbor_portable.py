"""The strict CBOR subset in the portable subset: exact encodings, round trips, refusals.

Expected bytes are from RFC 8949 appendix A where it has them. Runs under pytest on
CPython and under scripts/micropython_tests.py on MicroPython.
"""

from portable_support import raises, raises_with

from tcu.firmware.errors import ProtocolError
from tcu.protocol import cbor

INTS = (
    (0, "00"), (1, "01"), (23, "17"), (24, "1818"), (255, "18ff"), (256, "190100"),
    (65535, "19ffff"), (65536, "1a00010000"), (2**32 - 1, "1affffffff"),
    (2**32, "1b0000000100000000"), (2**64 - 1, "1bffffffffffffffff"),
    (-1, "20"), (-24, "37"), (-25, "3818"), (-256, "38ff"), (-257, "390100"),
    (-65536, "39ffff"), (-65537, "3a00010000"), (-(2**32), "3affffffff"),
    (-(2**32) - 1, "3b0000000100000000"), (-(2**64), "3bffffffffffffffff"),
)


def h(text):
    return bytes.fromhex(text)


def decode_error(data, text, **kwargs):
    def call():
        return cbor.decode(data, **kwargs)
    return raises_with(cbor.DecodeError, text, call)


def test_ints_at_every_size_boundary_encode_shortest():
    for value, hexed in INTS:
        assert cbor.encode(value) == h(hexed), value


def test_ints_at_every_size_boundary_round_trip():
    for value, hexed in INTS:
        assert cbor.decode(h(hexed)) == value, value
        assert cbor.decode(cbor.encode(value)) == value
        assert cbor.decode(cbor.encode([value, {value: value}])) == [value, {value: value}]


def test_ints_beyond_64_bits_are_refused():
    raises_with(ProtocolError, "too large", cbor.encode, 2**64)
    raises_with(ProtocolError, "too small", cbor.encode, -(2**64) - 1)


def test_simple_values():
    assert cbor.encode(False) == h("f4") and cbor.encode(True) == h("f5") and cbor.encode(None) == h("f6")
    assert cbor.decode(h("f4")) is False and cbor.decode(h("f5")) is True and cbor.decode(h("f6")) is None
    assert cbor.encode([True, 1]) == h("82f501")  # a bool is not encoded as an int


def test_bytes_and_text():
    cases = ((b"", "40"), (b"\x01\x02\x03\x04", "4401020304"), ("", "60"), ("a", "6161"),
             ("IETF", "6449455446"), ("\u00fc", "62c3bc"), ("\u6c34", "63e6b0b4"))
    for value, hexed in cases:
        assert cbor.encode(value) == h(hexed)
        decoded = cbor.decode(h(hexed))
        assert decoded == value and type(decoded) is type(value)


def test_long_strings_use_longer_length_heads():
    for n, head in ((23, "57"), (24, "5818"), (255, "58ff"), (256, "590100"), (1000, "5903e8")):
        data = bytes(range(256)) * 4
        encoded = cbor.encode(data[:n])
        assert encoded[:len(h(head))] == h(head) and len(encoded) == n + len(h(head))
        assert cbor.decode(encoded, max_size=2000) == data[:n]
    assert cbor.decode(cbor.encode("x" * 300)) == "x" * 300


def test_nested_arrays_and_maps():
    assert cbor.encode([1, [2, 3], [4, 5]]) == h("8301820203820405")
    assert cbor.encode({"a": 1, "b": [2, 3]}) == h("a26161016162820203")
    assert cbor.encode(["a", {"b": "c"}]) == h("826161a161626163")
    assert cbor.encode((1, 2)) == cbor.encode([1, 2])
    value = {1: [b"\x00", "t", -5, None, {2: [True, False]}], "k": []}
    assert cbor.decode(cbor.encode(value)) == value


def test_map_keys_are_in_deterministic_bytewise_order():
    expected = h("a5" "0a02" "186404" "2003" "616105" "616201")
    assert cbor.encode({"b": 1, 10: 2, -1: 3, 100: 4, "a": 5}) == expected
    assert cbor.encode({"a": 5, 100: 4, -1: 3, 10: 2, "b": 1}) == expected
    many = {}
    for key in range(40, -40, -3):
        many[key] = key
    encoded = cbor.encode(many)
    assert cbor.decode(encoded) == many
    assert encoded == cbor.encode(dict(sorted(many.items())))


def test_top_level_tag_round_trips_only_where_allowed():
    encoded = cbor.encode(cbor.Tagged(17, [1, b"x"]))
    assert encoded == h("d1820141" "78")
    assert cbor.decode(encoded, tags=(17,)) == cbor.Tagged(17, [1, b"x"])
    decode_error(encoded, "tag 17")
    decode_error(encoded, "tag 17", tags=(18,))
    decode_error(h("81d100"), "tag 17", tags=(17,))  # never below the top level


def test_refuses_indefinite_lengths():
    for hexed in ("9f01ff", "5f4101ff", "7f6161ff", "bf0101ff"):
        decode_error(h(hexed), "indefinite")


def test_refuses_reserved_length_codes():
    for hexed in ("1c", "1d", "1e"):
        decode_error(h(hexed), "reserved")


def test_refuses_duplicate_map_keys():
    decode_error(h("a201020103"), "repeats key")
    decode_error(h("a2616101616102"), "repeats key")


def test_refuses_map_keys_that_are_not_int_or_text():
    decode_error(h("a14100" "00"), "not int or text")
    decode_error(h("a1f500"), "not int or text")
    decode_error(h("a1800000"), "not int or text")


def test_refuses_tags():
    decode_error(h("c11a514b67b0"), "tag")  # epoch time
    decode_error(h("d82076687474703a2f2f7777772e6578616d706c652e636f6d"), "tag")  # URI


def test_refuses_floats_and_other_simple_values():
    for hexed in ("f93c00", "fa47c35000", "fb3ff199999999999a", "f7", "f0", "f818"):
        decode_error(h(hexed), "not allowed")
    raises_with(ProtocolError, "cannot encode", cbor.encode, 1.5)
    raises_with(ProtocolError, "cannot encode", cbor.encode, [object()])


def test_refuses_non_shortest_forms():
    for hexed in ("1800", "1817", "190017", "1900ff", "1a0000ffff", "1b00000000ffffffff", "3800", "5800", "780161"):
        decode_error(h(hexed), "non-shortest")


def test_refuses_truncated_input():
    for hexed in ("19", "1901", "1a000000", "4301", "6261", "820119", "a101", "a1016261"):
        decode_error(h(hexed), "truncated")


def test_refuses_trailing_bytes():
    decode_error(h("0102"), "trailing")
    decode_error(h("820102" "00"), "1 trailing")


def test_refuses_empty_and_non_bytes_input():
    decode_error(b"", "empty")
    raises_with(cbor.DecodeError, "expected bytes", cbor.decode, "00")
    assert cbor.decode(bytearray(h("8101"))) == [1]  # pyright: ignore[reportArgumentType]  # a bytearray too


def test_refuses_containers_that_claim_more_items_than_bytes():
    decode_error(h("9affffffff"), "claims")
    decode_error(h("bbffffffffffffffff"), "claims")
    decode_error(h("8301"), "claims")


def test_refuses_invalid_utf8_text():
    decode_error(h("62c328"), "UTF-8")
    decode_error(h("61ff"), "UTF-8")


def test_depth_cap():
    assert cbor.decode(h("81" * 8 + "00"), max_depth=8) == [[[[[[[[0]]]]]]]]
    decode_error(h("81" * 9 + "00"), "nesting", max_depth=8)
    decode_error(h("81" * 20 + "00"), "nesting")
    decode_error(h("a101a101a10100"), "nesting", max_depth=2)


def test_size_cap():
    assert cbor.decode(h("43010203"), max_size=4) == b"\x01\x02\x03"
    decode_error(h("4401020304"), "cap", max_size=4)
    decode_error(b"\x40" * 5000, "cap")
    assert cbor.DEFAULT_MAX_SIZE == 4096


def test_decode_errors_are_protocol_errors():
    err = raises(ProtocolError, cbor.decode, h("ff"))
    assert isinstance(err, cbor.DecodeError)
