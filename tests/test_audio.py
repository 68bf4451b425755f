"""Speech features (seqdis_jax/data/audio.py): the WAV and SPHERE readers, framing, the
log-magnitude and log-mel features against a direct scipy computation, the mel filterbank,
segments and the train standardisation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io.wavfile
import scipy.signal
from timit_fixture import riff_bytes, sphere_bytes

from seqdis_jax.data import audio


def _tone(hz: float, rate: int, seconds: float = 0.3, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * np.arange(round(seconds * rate)) / rate)


def _int16(x: np.ndarray) -> np.ndarray:
    return np.round(x * 32767).astype(np.int16)


def _direct_spectrum(samples: np.ndarray, rate: int) -> np.ndarray:
    """|rfft| of 25 ms periodic-Hamming frames every 10 ms, zero-padded to 400 samples, by a
    loop over frames with scipy's window."""
    window, shift = round(0.025 * rate), round(0.010 * rate)
    hamming = scipy.signal.get_window("hamming", window, fftbins=True)  # periodic
    frames = []
    start = 0
    while start + window <= len(samples):
        padded = np.zeros(400)
        padded[:window] = samples[start : start + window] * hamming
        frames.append(np.abs(np.fft.rfft(padded)))
        start += shift
    return np.array(frames)


# ---- readers -------------------------------------------------------------------------------


def test_read_wav_gives_float_samples_and_rate(tmp_path):
    samples = _int16(_tone(440, 8000))
    path = str(tmp_path / "a.wav")
    scipy.io.wavfile.write(path, 8000, samples)
    read, rate = audio.read_wav(path)
    assert rate == 8000 and read.dtype == np.float32
    np.testing.assert_array_equal(read, samples / np.float32(32768))
    assert np.abs(read).max() <= 1.0
    # Extra chunks (LIST) are skipped; read_audio picks the reader from the bytes.
    data = open(path, "rb").read()
    extra = b"LIST" + (5).to_bytes(4, "little") + b"INFOx\0"  # odd size: one pad byte
    body = data[12:36] + extra + data[36:]  # fmt chunk, LIST chunk, data chunk
    patched = b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WAVE" + body
    (tmp_path / "b.dat").write_bytes(patched)
    np.testing.assert_array_equal(audio.read_audio(str(tmp_path / "b.dat"))[0], read)


@pytest.mark.parametrize(
    "samples, rate, needle",
    [
        (np.zeros((100, 2), np.int16), 8000, "2 channels; only mono"),
        (np.zeros(100, np.uint8), 8000, "8-bit WAV samples; only 16-bit PCM"),
        (np.zeros(100, np.int32), 8000, "32-bit WAV samples"),
        (np.zeros(100, np.float32), 8000, "WAV format tag 0x3; only 16-bit integer PCM"),
    ],
)
def test_read_wav_refuses_other_formats(tmp_path, samples, rate, needle):
    path = str(tmp_path / "x.wav")
    scipy.io.wavfile.write(path, rate, samples)
    with pytest.raises(ValueError, match=needle):
        audio.read_wav(path)


def _fmt_wav(fmt: bytes, data: bytes) -> bytes:
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    body += b"data" + len(data).to_bytes(4, "little") + data
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def _fmt(tag: int, bits: int, rate: int = 8000, extra: bytes = b"") -> bytes:
    block = bits // 8
    return (tag.to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little")
            + (rate * block).to_bytes(4, "little") + block.to_bytes(2, "little")
            + bits.to_bytes(2, "little") + extra)


def test_read_wav_keeps_what_the_hand_written_reader_read(tmp_path):
    """WAVE_FORMAT_EXTENSIBLE 16-bit PCM, a data chunk longer than the file (read to its end)
    and a dangling odd byte: the cases of the reader scipy.io.wavfile replaced."""
    samples = _int16(_tone(440, 8000, 0.01))
    data = samples.astype("<i2").tobytes()
    pcm_guid = bytes.fromhex("0100000000001000800000aa00389b71")
    extensible = _fmt(0xFFFE, 16, extra=(22).to_bytes(2, "little") + (16).to_bytes(2, "little")
                      + (4).to_bytes(4, "little") + pcm_guid)
    expected = samples / np.float32(32768)
    for name, raw, count in [
        ("extensible", _fmt_wav(extensible, data), len(samples)),
        ("truncated", _fmt_wav(_fmt(1, 16), data)[:-6], len(samples) - 3),
        ("odd", _fmt_wav(_fmt(1, 16), data) + b"\1", len(samples)),
    ]:
        (tmp_path / f"{name}.wav").write_bytes(raw)
        read, rate = audio.read_wav(tmp_path / f"{name}.wav")
        assert rate == 8000 and read.dtype == np.float32, name
        np.testing.assert_array_equal(read, expected[:count], err_msg=name)


@pytest.mark.parametrize("raw, needle", [
    (_fmt_wav(_fmt(1, 24), bytes(30)), "24- or 32-bit WAV samples; only 16-bit PCM"),
    (_fmt_wav(_fmt(2, 16), bytes(30)), "unreadable WAV file (Unknown wave file format: ADPCM"),
    (_fmt_wav(_fmt(1, 16)[:8], bytes(30)), "unreadable WAV file"),  # truncated fmt chunk
    (_fmt_wav(_fmt(1, 16), b"")[:-8], "unreadable WAV file"),  # no data chunk
    # A RIFF size that ends before the data chunk (the hand-written reader ignored it).
    (b"RIFF" + (4).to_bytes(4, "little") + _fmt_wav(_fmt(1, 16), bytes(4))[8:],
     "unreadable WAV file (malformed chunk sizes)"),
])
def test_a_corrupt_or_unsupported_wav_is_one_line_naming_file_and_fix(tmp_path, raw, needle):
    path = tmp_path / "bad.wav"
    path.write_bytes(raw)
    with pytest.raises(ValueError) as error:
        audio.read_wav(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and needle in message, message
    assert "ffmpeg" in message and "\n" not in message


def test_read_audio_refuses_unknown_content(tmp_path):
    path = tmp_path / "x.wav"
    path.write_bytes(b"ID3\x03 not audio at all")
    with pytest.raises(ValueError, match="neither RIFF/WAVE nor NIST SPHERE"):
        audio.read_audio(str(path))
    with pytest.raises(ValueError, match="not a RIFF/WAVE file"):
        audio.read_wav(str(path))


@pytest.mark.parametrize("byte_format", ["01", "10"])
def test_sphere_reader_both_byte_orders(tmp_path, byte_format):
    samples = _int16(_tone(300, 16000, 0.05)) + np.int16(3)  # asymmetric: order matters
    path = tmp_path / "SI1.WAV"
    path.write_bytes(sphere_bytes(samples, byte_format=byte_format))
    for reader in (audio.read_sphere, audio.read_audio):
        read, rate = reader(str(path))
        assert rate == 16000 and read.dtype == np.float32
        np.testing.assert_array_equal(read, samples / np.float32(32768))
    # The header's sample_count bounds the samples read (trailing bytes ignored).
    path.write_bytes(sphere_bytes(samples, byte_format=byte_format) + b"\0\1\2\3")
    assert len(audio.read_sphere(str(path))[0]) == len(samples)
    # A RIFF copy gives the same samples.
    (tmp_path / "SI1.WAV.wav").write_bytes(riff_bytes(samples))
    np.testing.assert_array_equal(audio.read_audio(str(tmp_path / "SI1.WAV.wav"))[0], read)


def test_sphere_header_fields(tmp_path):
    data = sphere_bytes(np.zeros(4, np.int16), extra={"utterance_id": "aks0 sa1", "x": 2})
    size, fields = audio.read_sphere_header(data)
    assert size == 1024
    assert fields["sample_rate"] == 16000 and fields["sample_byte_format"] == "01"
    assert fields["utterance_id"] == "aks0 sa1" and fields["x"] == 2  # -s8 keeps the space


def test_sphere_errors_name_the_problem(tmp_path):
    path = tmp_path / "SX1.WAV"
    samples = np.zeros(10, np.int16)
    path.write_bytes(sphere_bytes(samples, coding="pcm,embedded-shorten-v2.00"))
    with pytest.raises(ValueError) as error:
        audio.read_audio(str(path))
    message = str(error.value)
    assert "compressed SPHERE" in message and "sph2pipe" in message and str(path) in message
    assert "\n" not in message
    path.write_bytes(sphere_bytes(samples, extra={"channel_count": 2}))
    with pytest.raises(ValueError, match="2 SPHERE channels"):
        audio.read_sphere(str(path))
    path.write_bytes(sphere_bytes(samples, byte_format="1"))
    with pytest.raises(ValueError, match="sample_byte_format '1'"):
        audio.read_sphere(str(path))
    path.write_bytes(sphere_bytes(samples, extra={"sample_n_bytes": 1}))
    with pytest.raises(ValueError, match="sample_n_bytes 1"):
        audio.read_sphere(str(path))
    path.write_bytes(b"NIST_1A\n   1024\nsample_rate -i 8000\n")
    with pytest.raises(ValueError, match="exceeds the file"):
        audio.read_sphere(str(path))


# ---- framing and features ------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000])
def test_scipy_window_equals_the_closed_form_hamming_it_replaced(rate):
    """scipy's periodic Hamming (`get_window`, fftbins=True) against the hand-written
    ``0.54 - 0.46 cos(2 pi k / N)``: equal to an ulp, and the float32 features computed with
    either are equal."""
    window, shift = audio.frame_sizes(rate)
    closed = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(window) / window)
    np.testing.assert_allclose(scipy.signal.get_window("hamming", window), closed,
                               rtol=0, atol=1e-15)
    samples = _int16(np.random.default_rng(rate).uniform(-1, 1, rate // 2)) / np.float32(32768)
    frames = np.lib.stride_tricks.sliding_window_view(samples.astype(np.float64), window)
    frames = frames[::shift] * closed
    spectrum = np.abs(np.fft.rfft(frames, n=400, axis=-1))
    before = {
        "log_magnitude": np.log(spectrum[:, :200] + 1e-5),
        "log_mel": np.log(spectrum**2 @ audio.mel_filterbank(80, 400, rate).T + 1e-10),
    }
    for kind, expected in before.items():
        np.testing.assert_allclose(audio.spectral_features(samples, rate, kind),
                                   expected.astype(np.float32), rtol=1e-6, err_msg=kind)


@pytest.mark.parametrize("rate, window, shift", [(8000, 200, 80), (16000, 400, 160)])
def test_frames_are_full_windows_every_10_ms(rate, window, shift):
    assert audio.frame_sizes(rate) == (window, shift)
    for n in (window - 1, window, window + shift - 1, window + shift, 10 * window + 7):
        expected = 0 if n < window else 1 + (n - window) // shift
        assert audio.num_frames(n, rate) == expected
    ramp = np.arange(window + 3 * shift + 5, dtype=float)
    frames = audio.frame_signal(ramp, rate)
    assert frames.shape == (4, window)
    hamming = scipy.signal.get_window("hamming", window, fftbins=True)
    for i in range(4):  # frame i starts at sample i * shift; no pre-emphasis
        np.testing.assert_allclose(frames[i], ramp[i * shift : i * shift + window] * hamming)
    with pytest.raises(ValueError, match="exceeds the 400-point FFT"):
        audio.frame_sizes(22050)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_log_magnitude_matches_a_direct_computation(rate):
    rng = np.random.default_rng(rate)
    samples = _tone(1013, rate) + 0.01 * rng.standard_normal(round(0.3 * rate))
    features = audio.spectral_features(samples, rate, "log_magnitude")
    direct = np.log(_direct_spectrum(samples, rate) + 1e-5)[:, :200]  # Nyquist bin dropped
    assert features.shape == (audio.num_frames(len(samples), rate), 200)
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rate, hz", [(8000, 1000), (8000, 2715), (16000, 1000), (16000, 5310)])
def test_a_tone_peaks_in_bin_f_times_400_over_rate(rate, hz):
    features = audio.spectral_features(_tone(hz, rate), rate, "log_magnitude")
    assert (features.argmax(1) == round(hz * 400 / rate)).all()


@pytest.mark.parametrize("rate", [8000, 16000])
def test_log_mel_matches_a_direct_computation(rate):
    samples = _tone(700, rate) + _tone(2500, rate, amplitude=0.2)
    features = audio.spectral_features(samples, rate, "log_mel")
    power = _direct_spectrum(samples, rate) ** 2  # all 201 bins
    direct = np.log(power @ audio.mel_filterbank(80, 400, rate).T + 1e-10)
    assert features.shape == (len(power), 80) and features.dtype == np.float32
    np.testing.assert_allclose(features, direct, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="feature kind"):
        audio.spectral_features(samples, rate, "mfcc")


def _htk_mel(hz):
    return 2595 * np.log10(1 + np.asarray(hz) / 700)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_mel_filterbank_triangles(rate):
    edges = audio.mel_edges(80, rate)
    assert len(edges) == 82 and edges[0] == 0 and edges[-1] == pytest.approx(rate / 2)
    np.testing.assert_allclose(np.diff(_htk_mel(edges)), _htk_mel(rate / 2) / 81)  # even in mel
    centres = edges[1:-1]
    assert (np.diff(centres) > 0).all()
    bank = audio.mel_filterbank(80, 400, rate)
    assert bank.shape == (80, 201) and bank.min() >= 0 and bank.max() <= 1
    assert (bank.max(1) > 0).all()  # every filter sees at least one bin
    # On a fine frequency grid each triangle peaks at 1 at its centre, 0 at its edges.
    fine = audio.mel_filterbank(80, 2**16, rate)
    freqs = np.arange(2**15 + 1) * rate / 2**16
    assert fine.max(1) == pytest.approx(np.ones(80), abs=1e-2)
    peaks = freqs[fine.argmax(1)]
    np.testing.assert_allclose(peaks, centres, atol=rate / 2**16)
    for m in (0, 40, 79):
        support = freqs[fine[m] > 0]
        assert support.min() >= edges[m] and support.max() <= edges[m + 2]


@pytest.mark.parametrize("rate, filter_index", [(8000, 50), (16000, 50), (16000, 70)])
def test_a_tone_lands_in_the_filter_around_it(rate, filter_index):
    centre = audio.mel_edges(80, rate)[filter_index + 1]
    hz = round(centre * 400 / rate) * rate / 400  # the FFT bin nearest the centre
    features = audio.spectral_features(_tone(hz, rate), rate, "log_mel")
    assert (features.argmax(1) == filter_index).all()


# ---- segments and standardisation ----------------------------------------------------------


@pytest.mark.parametrize(
    "frames, hop, starts",
    [(20, 10, [0]), (29, 10, [0]), (30, 10, [0, 10]), (41, 10, [0, 10, 20]),
     (59, 20, [0, 20]), (60, 20, [0, 20, 40]), (25, 3, [0, 3])],
)
def test_segments_start_every_hop_frames_fully_inside(frames, hop, starts):
    features = np.arange(frames * 3, dtype=np.float32).reshape(frames, 3)
    segments = audio.segment(features, hop=hop)
    assert segments.shape == (len(starts), 20, 3)
    for segment, start in zip(segments, starts):
        np.testing.assert_array_equal(segment, features[start : start + 20])


def test_short_utterances_are_padded_with_their_last_frame():
    features = np.arange(13 * 2, dtype=np.float32).reshape(13, 2)
    (segment,) = audio.segment(features, hop=10)
    np.testing.assert_array_equal(segment[:13], features)
    np.testing.assert_array_equal(segment[13:], np.repeat(features[-1:], 7, axis=0))
    assert audio.segment(features[:1], 5, hop=1).shape == (1, 5, 2)
    with pytest.raises(ValueError, match="no full 25 ms frame"):
        audio.segment(features[:0], hop=10)


def test_standardisation_uses_every_frame_of_every_segment():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3, 2, (n, 20, 5)).astype(np.float32) for n in (1, 4, 2)]
    batches[1][..., 4] = 7.0  # a constant bin: centred only
    stats = audio.FeatureStats()
    for batch in batches:
        stats.add(batch)
    mean, std = stats.mean_std()
    frames = np.concatenate(batches).reshape(-1, 5).astype(np.float64)
    np.testing.assert_allclose(mean, frames.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std[:4], frames.std(0)[:4], rtol=1e-5)
    standardised = audio.standardise(np.concatenate(batches), mean, std)
    np.testing.assert_allclose(standardised.reshape(-1, 5)[:, :4].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(standardised.reshape(-1, 5)[:, :4].std(0), 1, atol=1e-5)
    np.testing.assert_allclose(
        audio.destandardise(standardised, mean, std), np.concatenate(batches), atol=1e-5
    )
    constant = audio.FeatureStats()
    constant.add(np.full((2, 20, 3), 7.0))
    assert (constant.mean_std()[1] == 1).all()
    meta = audio.normalisation_metadata(mean, std)
    np.testing.assert_array_equal(audio.normalisation({"normalisation": meta})[0], mean)
