"""The serial protocol: the host's Python codec and the firmware's C codec (compiled for this host)
agree byte for byte, on vectors and on random frames, and neither parser can be broken by noise."""

import ctypes
import re
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptinf.drivers import mcu_protocol as p
from conftest import REPO

FIRMWARE = REPO / "firmware" / "stm32"


def test_crc16_ccitt_false_check_value():
    assert p.crc16(b"123456789") == 0x29B1   # the catalogue check value of CRC-16/CCITT-FALSE


@pytest.mark.parametrize("data,encoded", [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
])
def test_cobs_vectors(data, encoded):
    # Cheshire & Baker / Wikipedia's COBS examples
    assert p.cobs_encode(data) == encoded and p.cobs_decode(encoded) == data


def test_cobs_254_byte_block():
    data = bytes(range(1, 255))
    encoded = p.cobs_encode(data)
    assert encoded[0] == 0xFF and 0 not in encoded and p.cobs_decode(encoded) == data


def test_header_constants_match_the_firmware():
    header = (FIRMWARE / "include" / "proto.h").read_text()
    value = lambda name: int(re.search(rf"#define {name} (\d+)u", header).group(1))  # noqa: E731
    assert value("PROTO_VERSION") == p.VERSION and value("PROTO_MAX_PAYLOAD") == p.MAX_PAYLOAD
    assert value("PROTO_HEADER_BYTES") == p.HEADER_BYTES and value("PROTO_CRC_BYTES") == p.CRC_BYTES
    for member in p.FrameType:
        assert re.search(rf"PROTO_{member.name} = 0x{member.value:02X}", header), member
    for member in list(p.Status)[1:]:
        assert re.search(rf"PROTO_ERR_{member.name} = {member.value}\b", header), member


def test_frame_round_trip_and_seq_echo():
    frame = p.encode(p.FrameType.INFER, 300, b"\x00\x01\x02" * 50)   # seq wraps to 8 bits
    assert frame.endswith(b"\x00") and b"\x00" not in frame[:-1]
    (decoded,) = p.Decoder().feed(frame)
    assert decoded == p.Frame(p.FrameType.INFER, 300 & 0xFF, b"\x00\x01\x02" * 50)
    with pytest.raises(ValueError):
        p.encode(p.FrameType.INFER, 0, bytes(p.MAX_PAYLOAD + 1))


def test_decoder_reports_bad_frames_and_resynchronises():
    good = p.encode(p.FrameType.PING, 1, b"ok")
    corrupt = bytearray(good)
    corrupt[3] ^= 0x40
    d = p.Decoder()
    out = d.feed(b"\x00" + bytes(corrupt) + b"garbage\x00" + bytes(2000) + b"\xff" * 3000 + b"\x00" + good)
    assert [o for o in out if isinstance(o, p.Frame)] == [p.Frame(p.FrameType.PING, 1, b"ok")]
    assert p.BadFrame(p.Status.TOO_LARGE) in out and d.bad_frames >= 2
    wrong_version = bytearray(p.cobs_decode(good[:-1]))
    wrong_version[0] = 2
    body = bytes(wrong_version[:-2])
    reframed = p.cobs_encode(body + p.crc16(body).to_bytes(2, "little")) + b"\x00"
    assert p.Decoder().feed(reframed) == [p.BadFrame(p.Status.VERSION)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000))
def test_fuzzed_bytes_never_break_the_host_parser(noise):
    d = p.Decoder()
    out = d.feed(noise)
    assert all(isinstance(o, (p.Frame, p.BadFrame)) for o in out)
    good = p.encode(p.FrameType.PONG, 9, b"after noise")
    assert p.Frame(p.FrameType.PONG, 9, b"after noise") in d.feed(b"\x00" + good)  # back in sync


# ---- the firmware's C codec, compiled for this host ---------------------------------------------
class CFrame(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint8), ("seq", ctypes.c_uint8), ("length", ctypes.c_uint16),
                ("payload", ctypes.c_uint8 * p.MAX_PAYLOAD)]


@pytest.fixture(scope="module")
def libproto(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no host C compiler")
    out = tmp_path_factory.mktemp("c") / "libproto.so"
    subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-shared", "-fPIC",
                    f"-I{FIRMWARE / 'include'}", str(FIRMWARE / "src" / "proto.c"), "-o", str(out)], check=True)
    lib = ctypes.CDLL(str(out))
    lib.proto_crc16.restype = ctypes.c_uint16
    lib.proto_encode.restype = ctypes.c_size_t
    lib.proto_decoder_feed.restype = ctypes.c_int
    return lib


def c_encode(lib, frame_type, seq, payload):
    out = (ctypes.c_uint8 * (p.MAX_ENCODED + 1))()
    n = lib.proto_encode(ctypes.c_uint8(frame_type), ctypes.c_uint8(seq), bytes(payload),
                         ctypes.c_uint16(len(payload)), out, ctypes.c_size_t(len(out)))
    return bytes(out[:n])


def c_decode(lib, data):
    decoder = ctypes.create_string_buffer(p.MAX_ENCODED + 64)   # proto_decoder, generously sized
    lib.proto_decoder_init(decoder)
    frame, complete = CFrame(), ctypes.c_int()
    results = []
    for byte in data:
        status = lib.proto_decoder_feed(decoder, ctypes.c_uint8(byte), ctypes.byref(frame), ctypes.byref(complete))
        if complete.value:
            results.append(p.Frame(frame.type, frame.seq, bytes(frame.payload[:frame.length])))
        elif status:
            results.append(p.BadFrame(p.Status(status)))
    return results


def test_c_crc_matches(libproto):
    assert libproto.proto_crc16(b"123456789", ctypes.c_size_t(9)) == 0x29B1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=p.MAX_RAW))
def test_binascii_crc_is_byte_identical_to_the_firmwares(libproto, data):
    assert p.crc16(data) == libproto.proto_crc16(data, ctypes.c_size_t(len(data)))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 0x7F), st.integers(0, 255), st.binary(max_size=p.MAX_PAYLOAD))
def test_c_and_python_encode_identically_and_decode_each_other(libproto, frame_type, seq, payload):
    ours = p.encode(frame_type, seq, payload)
    assert c_encode(libproto, frame_type, seq, payload) == ours
    assert c_decode(libproto, ours) == [p.Frame(frame_type, seq, payload)]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_fuzzed_bytes_never_break_the_c_parser_and_it_agrees_with_python(libproto, noise):
    stream = noise + b"\x00" + p.encode(p.FrameType.ACK, 4, b"sync")
    c_out = c_decode(libproto, stream)
    assert c_out[-1] == p.Frame(p.FrameType.ACK, 4, b"sync")
    frames = lambda out: [o for o in out if isinstance(o, p.Frame)]  # noqa: E731
    assert frames(c_out) == frames(p.Decoder().feed(stream))
