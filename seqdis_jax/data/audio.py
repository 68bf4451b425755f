"""Speech input shared by the FSDD and TIMIT datasets: audio readers, spectral features,
fixed-length segments and train-split standardisation (numpy and scipy).

The speech protocol of the sequential disentanglement papers: DSVAE (Li & Mandt, 2018) and
C-DSVAE (Bai et al., 2021) App. C.1 compute spectral frames with a 10 ms frame shift and cut
the utterances into 200 ms segments, i.e. ``T = 20`` frames ("10 ms frame shift, 200 ms
segments = 20 frames"); SPYL (Naiman et al., 2023) App. A.3 feeds 200-dimensional frames to
the model. The papers do not state the rest, so this module fixes it (`FEATURE_KINDS`):

* **Framing** (`frame_signal`): a window of ``round(0.025 * rate)`` samples (25 ms), shifted by
  ``round(0.010 * rate)`` samples (10 ms): frame ``i`` holds samples ``[i * shift, i * shift +
  window)``. Only full windows are kept (no centre padding, no partial last frame): ``n`` samples
  give ``1 + (n - window) // shift`` frames (0 when ``n < window``). No pre-emphasis, no dither
  and no DC removal.
* **Window**: the periodic Hamming window ``0.54 - 0.46 cos(2 pi k / N)``, k = 0..N-1
  (``scipy.signal.get_window("hamming", N)``, i.e. ``fftbins=True``, the default of librosa's
  window and of ``torch.hamming_window``), N = the window length. Samples are the 16-bit
  values / 32768 (in [-1, 1)), which sets the scale the log floors below apply to.
* **FFT**: each windowed frame is zero-padded to ``N_FFT = 400`` samples: 16 kHz audio (TIMIT)
  fills 400 samples, 8 kHz audio (FSDD) 200 samples padded to 400, so neither is resampled and
  both give 201 rfft bins (bin ``k`` at ``k * rate / 400`` Hz: 40 Hz apart at 16 kHz, 20 Hz at
  8 kHz). Rates whose 25 ms window exceeds 400 samples (above 16 kHz) are refused.
* ``log_magnitude`` (200-d, SPYL's input size): ``log(|rfft| + 1e-5)`` of bins 0..199; the
  Nyquist bin 200 is dropped.
* ``log_mel`` (80-d): ``log(mel_fb @ |rfft|**2 + 1e-10)`` with `mel_filterbank` (80 triangular
  filters, HTK mel scale ``2595 log10(1 + f / 700)``, edges equally spaced in mel from 0 Hz to
  rate / 2, peak 1, no area normalisation) applied to the power of all 201 bins.
* **Segments** (`segment`): an utterance's ``(frames, F)`` features give the segments of
  ``length = 20`` frames starting at frames ``0, hop, 2 hop, ...`` that lie fully inside it (a
  tail shorter than a segment is dropped); an utterance of fewer than 20 frames (but at least
  one) gives one segment, padded at the end by repeating its last frame.
* **Standardisation** (`FeatureStats`): every feature bin is standardised with the mean and
  standard deviation (population, ``ddof=0``) of that bin over all frames of all train segments
  (overlapping segments count their shared frames once per segment), so train frames have mean
  0 and std 1 per bin; a bin of std 0 is divided by 1. The converters store both vectors in
  the build's metadata (`NORMALISATION_KEY`; `normalisation` reads them back) so that
  `destandardise` gives spectrograms in the units above.

Readers: `read_wav` (RIFF/WAVE, mono 16-bit PCM, by `scipy.io.wavfile`), `read_sphere` (NIST
SPHERE, as LDC ships TIMIT; mono 16-bit PCM of either byte order, uncompressed) and
`read_audio`, which picks one from the file's first bytes whatever its name says.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.io.wavfile
import scipy.signal

FRAME_LENGTH_S = 0.025  # 25 ms analysis window
FRAME_SHIFT_S = 0.010  # 10 ms between frame starts
N_FFT = 400  # every frame is zero-padded to this many samples: 201 rfft bins
NUM_MAGNITUDE_BINS = 200  # log_magnitude keeps rfft bins 0..199 (the Nyquist bin is dropped)
NUM_MEL_FILTERS = 80
MAGNITUDE_FLOOR = 1e-5  # log(|X| + MAGNITUDE_FLOOR)
POWER_FLOOR = 1e-10  # log(mel power + POWER_FLOOR)
FEATURE_KINDS = {"log_magnitude": NUM_MAGNITUDE_BINS, "log_mel": NUM_MEL_FILTERS}  # kind -> F
SEGMENT_FRAMES = 20  # 200 ms segments of 10 ms frames (DSVAE / C-DSVAE App. C.1)
NORMALISATION_KEY = "normalisation"  # metadata entry: {"mean": [F floats], "std": [...]}

_INT16_SCALE = 32768.0  # int16 -> [-1, 1)
_CONVERT_WAV = "convert it to mono 16-bit PCM, e.g. `ffmpeg -i {0} -ac 1 -c:a pcm_s16le out.wav`"
SPHERE_MAGIC = b"NIST_1A\n"
_COMPRESSED_CODINGS = ("shorten", "wavpack", "shortpack", "embedded")


# ---- readers -------------------------------------------------------------------------------


def _int16(data: bytes, byteorder: str) -> np.ndarray:
    data = data[: len(data) // 2 * 2]  # a dangling odd byte is dropped
    samples = np.frombuffer(data, dtype=np.dtype("<i2" if byteorder == "little" else ">i2"))
    return (samples.astype(np.float32) / np.float32(_INT16_SCALE)).astype(np.float32)


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """(float32 samples in [-1, 1), sample rate) of a RIFF/WAVE file of mono 16-bit PCM
    (`scipy.io.wavfile.read`, its warnings silenced: chunks other than ``fmt `` and ``data``
    are skipped, and a ``data`` chunk that claims more bytes than the file holds is read up to
    the end of the file). Raises ValueError naming the file and the fix for anything else (not
    RIFF/WAVE, malformed, compressed or float samples, more than one channel, not 16-bit).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError(f"{path} is not a RIFF/WAVE file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.io.wavfile.WavFileWarning)
            rate, samples = scipy.io.wavfile.read(path)
    except OSError:
        raise
    except Exception as e:  # ValueError, or struct/unbound-variable errors on bad chunk sizes
        reason = str(e) if isinstance(e, ValueError) else "malformed chunk sizes"
        raise ValueError(f"{path}: unreadable WAV file ({reason}); {_CONVERT_WAV.format(path)}"
                         ) from e
    if samples.ndim != 1:
        raise ValueError(f"{path}: {samples.shape[1]} channels; only mono WAV is supported; "
                         f"{_CONVERT_WAV.format(path)}")
    if samples.dtype.kind == "f":
        raise ValueError(f"{path}: WAV format tag 0x3; only 16-bit integer PCM is supported "
                         f"(these are float samples); {_CONVERT_WAV.format(path)}")
    if samples.dtype != np.int16:
        # scipy keeps 24-bit samples in int32: the dtype cannot tell 24 from 32 bits.
        bits = "24- or 32" if samples.dtype == np.int32 else str(8 * samples.dtype.itemsize)
        raise ValueError(f"{path}: {bits}-bit WAV samples; only 16-bit PCM is supported; "
                         f"{_CONVERT_WAV.format(path)}")
    if rate <= 0:
        raise ValueError(f"{path}: WAV sample rate {rate}")
    return (samples.astype(np.float32) / np.float32(_INT16_SCALE)).astype(np.float32), rate


def read_sphere_header(data: bytes, path: str = "<bytes>") -> tuple[int, dict[str, Any]]:
    """(header size in bytes, fields) of a NIST SPHERE file's leading bytes ``data``.

    The header is ``NIST_1A\\n``, the header size on line 2 (``   1024``), then lines ``key
    -type value`` (``-i`` integer, ``-r`` real, ``-sN`` string of N characters) up to
    ``end_head``. Raises ValueError naming the file when it is malformed.
    """
    if not data.startswith(SPHERE_MAGIC):
        raise ValueError(f"{path} is not a NIST SPHERE file (no NIST_1A header)")
    second_end = data.find(b"\n", len(SPHERE_MAGIC))
    if second_end < 0:
        raise ValueError(f"{path}: malformed SPHERE header size")
    try:
        header_size = int(data[len(SPHERE_MAGIC) : second_end])
    except ValueError:
        raise ValueError(f"{path}: malformed SPHERE header size") from None
    if header_size < second_end + 1 or len(data) < header_size:
        raise ValueError(f"{path}: SPHERE header size {header_size} exceeds the file")
    text = data[second_end + 1 : header_size].decode("latin-1")
    fields: dict[str, Any] = {}
    for line in text.split("\n"):
        line = line.strip()
        if line == "end_head":
            return header_size, fields
        if not line or line.startswith(";"):
            continue
        parts = line.split(" ", 2)
        if len(parts) < 3 or not parts[1].startswith("-"):
            raise ValueError(f"{path}: malformed SPHERE header line {line!r}")
        key, kind, value = parts
        try:
            if kind == "-i":
                fields[key] = int(value)
            elif kind == "-r":
                fields[key] = float(value)
            elif kind.startswith("-s"):
                fields[key] = value[: int(kind[2:])]
            else:
                raise ValueError(kind)
        except ValueError:
            raise ValueError(f"{path}: malformed SPHERE header line {line!r}") from None
    raise ValueError(f"{path}: SPHERE header without end_head")


def read_sphere(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """(float32 samples in [-1, 1), sample rate) of an uncompressed NIST SPHERE file of mono
    16-bit PCM, byte order ``01`` (little-endian) or ``10`` (big-endian).

    At most ``sample_count`` samples are read when the header gives it. A compressed file
    (``sample_coding`` naming shorten, wavpack or an embedded coding, as in LDC's compressed
    releases) raises ValueError saying to decompress it with sph2pipe; other unsupported headers
    (not 2 bytes per sample, not mono, no sample rate, another coding) raise ValueError too.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    header_size, fields = read_sphere_header(data, path)
    coding = str(fields.get("sample_coding", "pcm")).lower()
    if any(c in coding for c in _COMPRESSED_CODINGS):
        raise ValueError(
            f"{path} is a compressed SPHERE file (sample_coding {coding!r}); convert it to "
            f"WAV with sph2pipe first, e.g. `sph2pipe -f wav {path} {path}.wav`"
        )
    if coding != "pcm":
        raise ValueError(f"{path}: SPHERE sample_coding {coding!r}; only 16-bit PCM is supported")
    if fields.get("sample_n_bytes", 2) != 2:
        raise ValueError(
            f"{path}: SPHERE sample_n_bytes {fields['sample_n_bytes']}; only 2 is supported"
        )
    if fields.get("channel_count", 1) != 1:
        raise ValueError(
            f"{path}: {fields['channel_count']} SPHERE channels; only mono is supported"
        )
    rate = fields.get("sample_rate")
    if not isinstance(rate, int | float) or rate <= 0:
        raise ValueError(f"{path}: SPHERE header lacks a sample_rate")
    order = str(fields.get("sample_byte_format", "01"))
    if order not in ("01", "10"):
        raise ValueError(f"{path}: SPHERE sample_byte_format {order!r}; expected 01 or 10")
    body = data[header_size:]
    if "sample_count" in fields:
        body = body[: 2 * int(fields["sample_count"])]
    return _int16(body, "little" if order == "01" else "big"), int(rate)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """`read_wav` or `read_sphere` by the file's first bytes (``RIFF`` or ``NIST_1A``), whatever
    its name says (TIMIT's ``.WAV`` files are SPHERE). ValueError for any other content."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(len(SPHERE_MAGIC))
    if head.startswith(b"RIFF"):
        return read_wav(path)
    if head.startswith(SPHERE_MAGIC):
        return read_sphere(path)
    raise ValueError(f"{path} is neither RIFF/WAVE nor NIST SPHERE audio (starts {head[:8]!r})")


# ---- features ------------------------------------------------------------------------------


def frame_sizes(sample_rate: int) -> tuple[int, int]:
    """(window, shift) in samples: ``round(0.025 * rate)``, ``round(0.010 * rate)``."""
    window, shift = round(FRAME_LENGTH_S * sample_rate), round(FRAME_SHIFT_S * sample_rate)
    if window > N_FFT:
        raise ValueError(
            f"sample rate {sample_rate} Hz: a 25 ms window of {window} samples exceeds the "
            f"{N_FFT}-point FFT (rates up to 16 kHz are supported; resample first)"
        )
    if shift < 1:
        raise ValueError(f"sample rate {sample_rate} Hz is too low for 10 ms frames")
    return window, shift


def num_frames(num_samples: int, sample_rate: int) -> int:
    """Full frames of a signal: ``1 + (n - window) // shift``, 0 when shorter than a window."""
    window, shift = frame_sizes(sample_rate)
    return 0 if num_samples < window else 1 + (num_samples - window) // shift


def frame_signal(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """The windowed frames (frames, window) as float64: frame ``i`` is samples ``[i * shift,
    i * shift + window)`` times the periodic Hamming window; only full windows."""
    window, shift = frame_sizes(sample_rate)
    samples = np.asarray(samples, np.float64)
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples of shape (n,), got {samples.shape}")
    count = num_frames(len(samples), sample_rate)
    if count == 0:
        return np.zeros((0, window))
    frames = np.lib.stride_tricks.sliding_window_view(samples, window)[::shift][:count]
    return frames * scipy.signal.get_window("hamming", window, fftbins=True)  # periodic


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def mel_edges(num_filters: int, sample_rate: int) -> np.ndarray:
    """The ``num_filters + 2`` filter edges in Hz, equally spaced in mel from 0 to rate / 2:
    filter ``m`` rises from edge ``m`` to its centre ``m + 1`` and falls to edge ``m + 2``."""
    return mel_to_hz(np.linspace(0.0, hz_to_mel(sample_rate / 2), num_filters + 2))


def mel_filterbank(num_filters: int, n_fft: int, sample_rate: int) -> np.ndarray:
    """(num_filters, n_fft // 2 + 1) float64 triangular filters on the rfft bins' frequencies
    ``k * rate / n_fft``: weight ``max(0, min((f - lo) / (c - lo), (hi - f) / (hi - c)))``, 1 at
    the centre ``c`` (HTK mel scale, see `mel_edges`; no area normalisation)."""
    edges = mel_edges(num_filters, sample_rate)
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    lo, centre, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lo) / (centre - lo)
    falling = (hi - freqs) / (hi - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def spectral_features(samples: np.ndarray, sample_rate: int, kind: str) -> np.ndarray:
    """(frames, F) float32 features of a mono signal: ``kind`` "log_magnitude" (F = 200) or
    "log_mel" (F = 80); see the module docstring for every step."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"feature kind must be one of {sorted(FEATURE_KINDS)}, got {kind!r}")
    spectrum = np.abs(np.fft.rfft(frame_signal(samples, sample_rate), n=N_FFT, axis=-1))
    if kind == "log_magnitude":
        features = np.log(spectrum[:, :NUM_MAGNITUDE_BINS] + MAGNITUDE_FLOOR)
    else:
        filters = mel_filterbank(NUM_MEL_FILTERS, N_FFT, sample_rate)
        # einsum, not BLAS: small products, and OpenBLAS threads stall on a busy machine.
        features = np.log(np.einsum("tk,mk->tm", spectrum**2, filters) + POWER_FLOOR)
    return features.astype(np.float32)


def segment(features: np.ndarray, length: int = SEGMENT_FRAMES, *, hop: int) -> np.ndarray:
    """(segments, length, F): the segments of ``length`` frames starting at frames 0, hop,
    2 hop, ... that lie fully inside ``features`` (frames, F); fewer than ``length`` frames
    give one segment padded at the end by repeating the last frame. ValueError for 0 frames."""
    features = np.asarray(features)
    if length < 1 or hop < 1:
        raise ValueError(f"segment length and hop must be >= 1, got {length} and {hop}")
    count = len(features)
    if count == 0:
        raise ValueError("no full 25 ms frame to segment")
    if count < length:
        padding = np.repeat(features[-1:], length - count, axis=0)
        return np.concatenate([features, padding])[None]
    starts = np.arange(0, count - length + 1, hop)
    return np.stack([features[s : s + length] for s in starts])


def utterance_segments(
    path: str | os.PathLike, kind: str, hop: int, sample_rate: int | None = None
) -> tuple[np.ndarray, int]:
    """(`segment` of the `spectral_features` of the audio file at ``path``, its sample rate).
    With ``sample_rate``, a file of another rate raises ValueError naming it; so does a file
    too short for one 25 ms frame."""
    samples, rate = read_audio(path)
    if sample_rate is not None and rate != sample_rate:
        raise ValueError(
            f"{os.fspath(path)} has sample rate {rate} Hz, the files before it {sample_rate} Hz"
        )
    try:
        return segment(spectral_features(samples, rate, kind), hop=hop), rate
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)}: {e} ({len(samples)} samples at {rate} Hz)") from e


# ---- standardisation -----------------------------------------------------------------------


class FeatureStats:
    """Running per-bin mean and std (ddof 0, float64 sums) of the frames of the segments
    `add`-ed: the train split's standardisation."""

    def __init__(self):
        self.count = 0
        self.total: np.ndarray | float = 0.0
        self.total_sq: np.ndarray | float = 0.0

    def add(self, segments: np.ndarray) -> None:
        frames = np.asarray(segments, np.float64).reshape(-1, np.shape(segments)[-1])
        self.count += len(frames)
        self.total = self.total + frames.sum(0)
        self.total_sq = self.total_sq + (frames**2).sum(0)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) float32 per bin; a bin of std 0 gets std 1 (it is only centred)."""
        if self.count == 0:
            raise ValueError("no train frames to standardise with")
        mean = self.total / self.count
        std = np.sqrt(np.maximum(self.total_sq / self.count - mean**2, 0.0))
        std = np.where(std > 1e-12, std, 1.0)
        return mean.astype(np.float32), std.astype(np.float32)


def standardise(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(features - mean) / std`` per bin, float32."""
    return ((np.asarray(features) - mean) / std).astype(np.float32)


def destandardise(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Standardised features back in the units of `spectral_features` (log magnitude or log
    mel power): ``features * std + mean``, float32."""
    return (np.asarray(features) * std + mean).astype(np.float32)


def normalisation_metadata(mean: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    """The metadata entry under `NORMALISATION_KEY` (JSON lists of floats)."""
    return {
        "mean": [float(v) for v in np.asarray(mean, np.float32)],
        "std": [float(v) for v in np.asarray(std, np.float32)],
        "over": "every frame of every train segment, per feature bin (ddof 0)",
    }


def normalisation(metadata: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 of a speech build from its metadata (`array_record.read_metadata`,
    or a loaded source's ``info.metadata``); KeyError when it holds none."""
    if NORMALISATION_KEY not in metadata:
        raise KeyError(f"the dataset's metadata has no {NORMALISATION_KEY!r} entry")
    entry = metadata[NORMALISATION_KEY]
    return np.asarray(entry["mean"], np.float32), np.asarray(entry["std"], np.float32)


def read_normalisation(
    name: str, data_dir: str | os.PathLike, version: str = "1.0.0"
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 stored in the prepared build ``<data_dir>/<name>/<version>``."""
    from seqdis_jax.data import array_record  # imports TFDS: only when asked

    metadata = array_record.read_metadata(name, data_dir, version)
    if metadata is None:
        raise array_record.NotPreparedError(
            f"dataset {name!r} is not prepared in {os.fspath(data_dir)}"
        )
    return normalisation(metadata)


def train_statistics(
    paths: Sequence[str | os.PathLike],
    is_train: Sequence[bool],
    kind: str,
    hop: int,
    on_file: Callable[[], None] | None = None,
) -> tuple[list[int], int, np.ndarray, np.ndarray]:
    """A converter's first pass: reads every file (all must share one sample rate), returns
    (number of segments per file, the sample rate, mean, std) with the mean and std of the
    train files' segments (`FeatureStats`). ``on_file`` is called after each file. ValueError
    names a file that cannot be used."""
    stats = FeatureStats()
    counts: list[int] = []
    rate = None
    for path, train in zip(paths, is_train, strict=True):
        segments, rate = utterance_segments(path, kind, hop, rate)
        counts.append(len(segments))
        if train:
            stats.add(segments)
        if on_file is not None:
            on_file()
    if rate is None:
        raise ValueError("no audio file to read")
    return (counts, rate, *stats.mean_std())


def speaker_names(recordings: Iterable[Any]) -> tuple[str, ...]:
    """The distinct ``speaker`` of the recordings, sorted: a ``speaker`` ClassLabel's names."""
    return tuple(sorted({r.speaker for r in recordings}))
