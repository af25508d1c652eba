"""The real firmware in QEMU netduinoplus2 behind pyserial: handshake, noise, model loading,
int8 and float32 inference that agree with the host reference, deterministic counts."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier

from adaptinf.drivers import mcu_protocol as proto
from adaptinf.drivers.mcu import CHUNK, McuClient, McuError
from adaptinf.drivers.mcu_model import quantize_net, reference_logits, to_blob
from adaptinf.rig.qemu_mcu import toolchain_missing

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(toolchain_missing() is not None, reason=str(toolchain_missing()))]


@pytest.fixture(scope="module")
def digits_net():
    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target
    clf = MLPClassifier((32,), max_iter=400, random_state=0).fit(x[:1400], y[:1400])
    return x, y, [w.T for w in clf.coefs_], clf.intercepts_, clf.score(x[1400:], y[1400:])


def test_handshake_and_ping(mcu):
    with McuClient(mcu.url) as m:
        hello = m.hello()
        assert (hello.firmware_version, hello.protocol_version, hello.max_payload) == (2, proto.VERSION,
                                                                                        proto.MAX_PAYLOAD)
        assert m.ping(b"\x00echo\x00") == b"\x00echo\x00"


def test_garbage_on_the_line_is_answered_and_survived(mcu):
    with McuClient(mcu.url) as m:
        m._serial.write(b"\x13\x37 line noise \xff\xfe\x00" + bytes(range(1, 200)) + b"\x00")
        assert m.ping(b"still here") == b"still here"
        with pytest.raises(McuError) as err:
            m.request(proto.FrameType(0x0A), b"")  # ACK is not a request the firmware takes
        assert err.value.status == proto.Status.TYPE


def test_inference_before_a_model_is_refused(mcu):
    with McuClient(mcu.url) as m:
        m.request(proto.FrameType.LOAD_BEGIN, (10).to_bytes(4, "little"))  # start, never finish
        with pytest.raises(McuError) as err:
            m.infer(np.zeros(64, np.float32))
        assert err.value.status == proto.Status.NOT_LOADED


def test_a_corrupt_model_is_refused(mcu, digits_net):
    x, _, w, b, _ = digits_net
    blob = bytearray(to_blob(quantize_net(w, b, x[:200])))
    blob[0:4] = b"XXXX"
    def send_blob(m):
        m.request(proto.FrameType.LOAD_BEGIN, len(blob).to_bytes(4, "little"))
        for offset in range(0, len(blob), CHUNK):
            m.request(proto.FrameType.LOAD_CHUNK, offset.to_bytes(4, "little") + bytes(blob[offset:offset + CHUNK]))

    with McuClient(mcu.url) as m:
        send_blob(m)
        with pytest.raises(McuError) as err:
            m.request(proto.FrameType.LOAD_END, b"\x00\x00")            # wrong whole-model CRC
        assert err.value.status == proto.Status.CRC
        send_blob(m)
        with pytest.raises(McuError) as err:
            m.request(proto.FrameType.LOAD_END, proto.crc16(bytes(blob)).to_bytes(2, "little"))
        assert err.value.status == proto.Status.MODEL                   # right CRC, not a model


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_mcu_inference_agrees_with_the_host_reference(mcu, digits_net, dtype):
    x, y, w, b, float_accuracy = digits_net
    net = quantize_net(w, b, x[:200], dtype)
    test = range(1400, 1500)
    with McuClient(mcu.url) as m:
        assert m.load(net) == len(to_blob(net))
        results = [m.infer(x[i]) for i in test]
        again = m.infer(x[1400])
    for i, r in zip(test, results):
        ref = reference_logits(net, x[i])
        assert r.label == int(np.argmax(ref)) and r.dtype == dtype
        probs = np.exp(ref - ref.max())
        assert r.confidence == pytest.approx(float(probs.max() / probs.sum()), rel=1e-4)
    accuracy = np.mean([r.label == y[i] for i, r in zip(test, results)])
    assert accuracy >= float_accuracy - 0.03   # int8 costs at most a few points on digits
    # -icount: deterministic to one tick (a tick is 1/0.168 instructions at shift=0; where the count
    # starts against the tick boundary moves it by one)
    assert abs(again.count - results[0].count) <= 1


def test_calibration_measures_the_dsnns_on_the_mcu(mcu, bundle, tmp_path):
    from adaptinf.calib.calibrate import Rig, calibrate
    from adaptinf.calib.report import write_report
    from adaptinf.daemon.device_models import DeviceModels
    from adaptinf.daemon.link_estimator import LinkEstimator
    from adaptinf.toolchain.datasets import digits_features
    from adaptinf.toolchain.dsnn import DsnnConfig, build_dsnn, export

    x, y = digits_features()
    result = build_dsnn(x[450:], y[450:], x[:450], y[:450],
                        DsnnConfig(baseline_hidden=(32,), thresholds=2, max_width=16, max_hidden_layers=1,
                                   max_iter=100, constraint=0.9), progress=False)
    export(result, tmp_path / "dsnn", x[450:650])
    rig = Rig(bundle, DeviceModels.load(bundle, "onnxruntime", str(tmp_path)), None, LinkEstimator(), None, 5.0,
              mcu_port=mcu.url, dsnn_dir=tmp_path / "dsnn")
    profile = calibrate(rig, tmp_path / "profile.json", components=("device", "mcu"), runs=3, progress=False)
    measured = profile.extra["measurements"]["mcu"]["models"]
    assert set(measured) == {"dsnn_main", "dsnn_tail"}
    for entry in measured.values():
        assert entry["systick_ticks"] > 0 and entry["round_trip_ms"] > 0 and entry["load_s"] > 0
    names = [m.name for m in profile.models]
    assert "mcu:dsnn_main" in names and "mcu:dsnn_tail" in names
    page = write_report(bundle, profile, tmp_path / "report").read_text()
    assert "MCU model" in page and "not silicon cycles" in page


def test_selftest_command_passes_on_the_firmware(mcu, dsnn_export, capsys):
    from adaptinf.programs.cli import main

    assert main(["mcu", "selftest", "--port", mcu.url, "--count", "30"]) == 0
    assert main(["mcu", "selftest", "--port", mcu.url, "--model", str(dsnn_export[2]), "--count", "30"]) == 0
    out = capsys.readouterr().out
    assert "30/30 digits bit-exact" in out and "FAIL" not in out and "tree: True" in out


def test_selftest_fails_clearly_without_an_mcu(capsys):
    from adaptinf.programs.cli import main

    assert main(["mcu", "selftest", "--port", "socket://127.0.0.1:9", "--count", "1"]) == 1
    assert "FAIL  serial" in capsys.readouterr().out


@pytest.mark.parametrize("board, flash_kib", [("stm32f405", 1024), ("nucleo-f446re", 512)])
def test_firmware_builds_for_each_board_and_fits_its_memory(board, flash_kib):
    import subprocess

    from adaptinf.rig.qemu_mcu import FIRMWARE_DIR

    subprocess.run(["make", "-C", str(FIRMWARE_DIR), f"BOARD={board}"], check=True, capture_output=True)
    elf = FIRMWARE_DIR / "build" / ("" if board == "stm32f405" else board) / "adaptinf-mcu.elf"
    out = subprocess.run(["arm-none-eabi-size", str(elf)], check=True, capture_output=True, text=True).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    assert text + data <= flash_kib * 1024 and data + bss <= 128 * 1024 - 8 * 1024   # 8 KiB left for the stack


def test_a_tty_path_works_and_is_opened_exclusively(dsnn_export):
    """A pty stands in for /dev/ttyACM0: the same driver, a tty path, an exclusive open."""
    import serial

    from adaptinf.rig.qemu_mcu import QemuMcu

    rig = QemuMcu(serial="pty")
    try:
        assert rig.url.startswith("/dev/pts/")
        with McuClient(rig.url) as m:
            assert m.hello().protocol_version == proto.VERSION
            assert m.ping(b"\x00tty\x00") == b"\x00tty\x00"
            with pytest.raises(serial.SerialException):
                McuClient(rig.url)        # a second process must not share the line
    finally:
        rig.stop()


def wide_input_net(dtype: str, features: int = 1024, hidden: int = 32, classes: int = 10, seed: int = 0):
    """A 32x32-grey-sized net (random weights: the arithmetic, not the accuracy, is checked)."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0, 0.05, (hidden, features)).astype(np.float32),
               rng.normal(0, 0.2, (classes, hidden)).astype(np.float32)]
    biases = [rng.normal(0, 0.1, hidden).astype(np.float32), rng.normal(0, 0.1, classes).astype(np.float32)]
    x = rng.random((64, features)).astype(np.float32)
    return quantize_net(weights, biases, x, dtype), x


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_a_1024_feature_input_arrives_in_chunks_and_agrees_with_the_host(mcu, dtype):
    net, x = wide_input_net(dtype, hidden=32 if dtype == "int8" else 16)   # float32: 64 KB of weights
    with McuClient(mcu.url) as m:
        hello = m.hello()
        assert (hello.max_input, hello.max_width) == (1024, 256)
        m.load(net)
        results = [m.infer(x[i]) for i in range(8)]
        m._serial.write(b"\x00")                      # a stray byte between frames changes nothing
        again = m.infer(x[0])
    for i, r in enumerate(results):
        ref = reference_logits(net, x[i])
        assert r.label == int(np.argmax(ref))
        np.testing.assert_array_equal(r.logits, ref.astype(np.float32))   # bit for bit
    assert again.label == results[0].label and abs(again.count - results[0].count) <= 1


def test_the_input_and_width_caps_are_checked_at_load_with_the_reason(mcu, monkeypatch):
    from adaptinf.drivers import mcu_model

    with pytest.raises(ValueError, match="1025 input features; the firmware takes at most 1024"):
        wide_input_net("int8", features=1025, hidden=16)       # the host says so before sending anything
    with pytest.raises(ValueError, match="257 outputs; the firmware's layers have at most 256"):
        wide_input_net("int8", features=64, hidden=257)
    monkeypatch.setattr(mcu_model, "check_shape", lambda shapes: None)   # now the firmware's own check
    too_many, _ = wide_input_net("int8", features=1025, hidden=16)
    too_wide, _ = wide_input_net("int8", features=64, hidden=257)
    with McuClient(mcu.url) as m:
        for net, reason in ((too_many, "more input features than the firmware takes"),
                            (too_wide, "a layer wider than the firmware takes")):
            with pytest.raises(McuError, match=reason) as err:
                m.load(net)
            assert err.value.status == proto.Status.MODEL
        net, x = wide_input_net("int8")               # and a good one still loads and answers
        m.load(net)
        assert m.infer(x[0]).label == int(np.argmax(reference_logits(net, x[0])))


def test_a_chunk_out_of_order_restarts_the_staging(mcu):
    import struct

    net, x = wide_input_net("int8")
    with McuClient(mcu.url) as m:
        m.load(net)
        m.request(proto.FrameType.INPUT_CHUNK, struct.pack("<H", 0) + x[0, :127].tobytes())
        with pytest.raises(McuError) as err:           # a gap: refused, and staging starts over
            m.request(proto.FrameType.INPUT_CHUNK, struct.pack("<H", 500) + x[0, 500:627].tobytes())
        assert err.value.status == proto.Status.LENGTH
        with pytest.raises(McuError) as err:           # nothing staged: an empty INFER is refused
            m.request(proto.FrameType.INFER, b"")
        assert err.value.status == proto.Status.LENGTH
        assert m.infer(x[1]).label == int(np.argmax(reference_logits(net, x[1])))
