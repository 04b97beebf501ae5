"""SipHash-2-4 kernel and reference against the published vectors; the packet tag."""

from __future__ import annotations

import random

import numpy as np
import pytest

from net.siphash import key_words, siphash24, siphash24_ref
from net.tag import _put_tag, _tag_ok, sign, verify

# The reference implementation's `vectors_sip64` table (veorq/SipHash, vectors.h; Aumasson &
# Bernstein, "SipHash: a fast short-input PRF"): entry i is SipHash-2-4 with key 00 01 .. 0f
# of the message 00 01 .. (i-1), as the 8 output bytes least significant first. Copied
# verbatim; cross-checked against `openssl mac -macopt size:8 SIPHASH` (OpenSSL 3.0) too.
VECTORS_SIP64 = [
    "310e0edd47db6f72", "fd67dc93c539f874", "5a4fa9d909806c0d", "2d7efbd796666785",
    "b7877127e09427cf", "8da699cd64557618", "cee3fe586e46c9cb", "37d1018bf50002ab",
    "6224939a79f5f593", "b0e4a90bdf82009e", "f3b9dd94c5bb5d7a", "a7ad6b22462fb3f4",
    "fbe50e86bc8f1e75", "903d84c02756ea14", "eef27a8e90ca23f7", "e545be4961ca29a1",
    "db9bc2577fcc2a3f", "9447be2cf5e99a69", "9cd38d96f0b3c14b", "bd6179a71dc96dbb",
    "98eea21af25cd6be", "c7673b2eb0cbf2d0", "883ea3e395675393", "c8ce5ccd8c030ca8",
    "94af49f6c650adb8", "eab8858ade92e1bc", "f315bb5bb835d817", "adcf6b0763612e2f",
    "a5c91da7acaa4dde", "716595876650a2a6", "28ef495c53a387ad", "42c341d8fa92d832",
    "ce7cf2722f512771", "e37859f94623f3a7", "381205bb1ab0e012", "ae97a10fd434e015",
    "b4a31508beff4d31", "81396229f0907902", "4d0cf49ee5d4dcca", "5c73336a76d8bf9a",
    "d0a704536ba93e0e", "925958fcd6420cad", "a915c29bc8067318", "952b79f3bc0aa6d4",
    "f21df2e41d4535f9", "87577519048f53a9", "10a56cf5dfcd9adb", "eb75095ccd986cd0",
    "51a9cb9ecba312e6", "96afadfc2ce666c7", "72fe52975a4364ee", "5a1645b276d592a1",
    "b274cb8ebf87870a", "6f9bb4203de7b381", "eaecb2a30b22a87f", "9924a43cc1315724",
    "bd838d3aafbf8db7", "0b1a2a3265d51aea", "135079a3231ce660", "932b2846e4d70666",
    "e1915f5cb1eca46c", "f325965ca16d629f", "575ff28e60381be5", "724506eb4c328a95",
]
KEY = bytes(range(16))
MASK64 = (1 << 64) - 1


def _expected(i: int) -> int:
    return int.from_bytes(bytes.fromhex(VECTORS_SIP64[i]), "little")


def test_table_is_the_published_one() -> None:
    assert len(VECTORS_SIP64) == 64
    assert _expected(0) == 0x726FDB47DD0E0E31
    # the paper's Appendix A example: 15-byte message 00..0e
    assert _expected(15) == 0xA129CA6149BE45E5


@pytest.mark.parametrize("i", range(64))
def test_reference_matches_vectors(i: int) -> None:
    assert siphash24_ref(KEY, bytes(range(i))) == _expected(i)


def test_kernel_matches_vectors() -> None:
    k0, k1 = key_words(KEY)
    buf = np.arange(64, dtype=np.uint8)
    for i in range(64):
        assert siphash24(k0, k1, buf, 0, i) & MASK64 == _expected(i), i


def test_kernel_matches_vectors_at_an_offset() -> None:
    k0, k1 = key_words(KEY)
    buf = np.full(100, 0xAA, np.uint8)
    buf[13:13 + 64] = np.arange(64, dtype=np.uint8)
    for i in range(64):
        assert siphash24(k0, k1, buf, 13, i) & MASK64 == _expected(i), i


def test_key_words() -> None:
    assert key_words(KEY) == (0x0706050403020100, 0x0F0E0D0C0B0A0908)
    k0, k1 = key_words(b"\xff" * 16)
    assert k0 == k1 == -1
    with pytest.raises(ValueError):
        key_words(b"short")


def test_kernel_matches_reference_every_length() -> None:
    rng = random.Random(1)
    buf = np.zeros(700, np.uint8)
    for n in range(301):
        for _ in range(3):
            key = rng.randbytes(16)
            data = rng.randbytes(n)
            start = rng.randrange(0, 700 - n + 1)
            buf[:] = np.frombuffer(rng.randbytes(700), np.uint8)  # noise around the message
            buf[start:start + n] = np.frombuffer(data, np.uint8)
            k0, k1 = key_words(key)
            assert siphash24(k0, k1, buf, start, n) & MASK64 == siphash24_ref(key, data), n


def test_extreme_keys() -> None:
    data = bytes(range(40))
    buf = np.frombuffer(data, np.uint8).copy()
    for key in (bytes(16), b"\xff" * 16, b"\x80" * 16, bytes(8) + b"\xff" * 8):
        k0, k1 = key_words(key)
        assert siphash24(k0, k1, buf, 0, 40) & MASK64 == siphash24_ref(key, data)


def test_put_tag_round_trip() -> None:
    rng = random.Random(2)
    for size in (24, 25, 33, 53, 68, 132, 188, 256, 1200):
        key = rng.randbytes(16)
        k0, k1 = key_words(key)
        packet = rng.randbytes(size - 8)
        buf = np.zeros(size + 10, np.uint8)
        buf[5:5 + size - 8] = np.frombuffer(packet, np.uint8)
        assert _put_tag(buf, 5, size - 8, k0, k1) == 5 + size
        tag = bytes(buf[5 + size - 8:5 + size])
        assert int.from_bytes(tag, "little") == siphash24_ref(key, packet)
        row = buf[5:5 + size].copy()
        assert _tag_ok(row, size, k0, k1)
        assert sign(packet, key) == bytes(row)
        assert verify(bytes(row), key)


@pytest.mark.parametrize("size", [24, 33, 68])
def test_any_single_bit_flip_breaks_the_tag(size: int) -> None:
    rng = random.Random(size)
    key = rng.randbytes(16)
    k0, k1 = key_words(key)
    row = np.frombuffer(sign(rng.randbytes(size - 8), key), np.uint8).copy()
    assert _tag_ok(row, size, k0, k1)
    for byte in range(size):  # header, body and the tag itself
        for bit in range(8):
            row[byte] ^= 1 << bit
            assert not _tag_ok(row, size, k0, k1), (byte, bit)
            row[byte] ^= 1 << bit
    assert _tag_ok(row, size, k0, k1)


def test_wrong_key_or_length_fails() -> None:
    key = bytes(range(16))
    other = bytes(range(1, 17))
    signed = sign(b"x" * 30, key)
    assert verify(signed, key)
    assert not verify(signed, other)
    assert not verify(signed[:-1], key)
    assert not verify(signed + b"\x00", key)
    assert not verify(b"", key)
    assert not verify(b"1234567", key)
    # an empty packet is still tagged: the tag alone
    assert verify(sign(b"", key), key)
    assert len(sign(b"", key)) == 8
