"""A tiny synthetic copy of FSDD's ``recordings`` folder, for tests.

``<root>/{digit}_{speaker}_{take}.wav``: 8 kHz mono 16-bit PCM, FSDD's 6 speakers x 10 digits x
takes 0, 1 (official test split) and 5, 6, 7 (train): 300 files of 0.30-0.38 s, plus one
0.15 s file (``3_george_7.wav``: 13 frames, one padded segment) and a ``notes.txt`` that must
be ignored. Each file is the sum of two tones at exact 20 Hz FFT bins (so a converted segment
says what it is) and a little seeded noise:

* the speaker's tone at ``400 + 60 * s`` Hz (s = the speaker's index in `SPEAKERS`): bins
  20..35 of the 400-point FFT at 8 kHz;
* the digit's tone at ``1600 + 200 * d`` Hz: bins 80..170.
"""

from __future__ import annotations

import os
import tempfile
import wave

import numpy as np

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
TAKES = (0, 1, 5, 6, 7)
TEST_TAKES = (0, 1)
RATE = 8000
SHORT = (3, "george", 7)  # (digit, speaker, take) of the 0.15 s file
SHORT_SAMPLES = 1200
BIN_HZ = RATE / 400  # 20 Hz between FFT bins
SPEAKER_BINS = (15, 45)  # [lo, hi) FFT bins holding the speaker tones
DIGIT_BINS = (70, 180)


def speaker_hz(speaker: str) -> float:
    return 400.0 + 60.0 * SPEAKERS.index(speaker)


def digit_hz(digit: int) -> float:
    return 1600.0 + 200.0 * digit


def num_samples(digit: int, speaker: str, take: int) -> int:
    if (digit, speaker, take) == SHORT:
        return SHORT_SAMPLES
    return 2400 + 320 * ((digit + take) % 3)


def expected_segments(samples: int, hop: int = 10) -> int:
    """Segments of a file of ``samples`` samples at 8 kHz: 200-sample windows every 80
    samples, 20-frame segments every ``hop`` frames, at least one (padded)."""
    frames = 1 + (samples - 200) // 80
    return max(1, 1 + (frames - 20) // hop)


def samples_of(digit: int, speaker: str, take: int) -> np.ndarray:
    """The int16 samples of one file."""
    n = num_samples(digit, speaker, take)
    t = np.arange(n) / RATE
    rng = np.random.default_rng([digit, SPEAKERS.index(speaker), take])
    x = 0.3 * np.sin(2 * np.pi * speaker_hz(speaker) * t)
    x += 0.3 * np.sin(2 * np.pi * digit_hz(digit) * t + 0.5)
    x += 0.003 * rng.standard_normal(n)
    return np.round(x * 32767).astype(np.int16)


def write_wav(path: str, samples: np.ndarray, rate: int = RATE, channels: int = 1) -> None:
    with wave.open(path, "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(np.dtype(samples.dtype).itemsize)
        f.setframerate(rate)
        f.writeframes(np.ascontiguousarray(samples).tobytes())


def write_source(root: str) -> list[tuple[str, int, str, int, int]]:
    """Writes the fixture into ``root`` (created if needed) and returns every WAV as (file
    name, digit, speaker, take, number of samples), sorted by (digit, speaker, take)."""
    os.makedirs(root, exist_ok=True)
    files = []
    for digit in range(10):
        for speaker in SPEAKERS:
            for take in TAKES:
                name = f"{digit}_{speaker}_{take}.wav"
                write_wav(os.path.join(root, name), samples_of(digit, speaker, take))
                files.append((name, digit, speaker, take, num_samples(digit, speaker, take)))
    with open(os.path.join(root, "notes.txt"), "w") as f:
        f.write("not a recording\n")
    return files


def decode(spectrum: np.ndarray) -> tuple[str, int]:
    """(speaker, digit) read back from a log-magnitude frame or segment (200 bins, original
    units): the loudest bin of each tone band."""
    mean = np.asarray(spectrum).reshape(-1, 200).mean(0)
    speaker_bin = SPEAKER_BINS[0] + int(np.argmax(mean[slice(*SPEAKER_BINS)]))
    digit_bin = DIGIT_BINS[0] + int(np.argmax(mean[slice(*DIGIT_BINS)]))
    speaker = SPEAKERS[round((speaker_bin * BIN_HZ - 400) / 60)]
    return speaker, round((digit_bin * BIN_HZ - 1600) / 200)


def prepare_for_tests(data_dir: str) -> dict[str, str]:
    """Writes the fixture into a fresh folder next to ``data_dir``, prepares it into
    ``data_dir`` and returns the config overrides that point training at that build."""
    from data_prep import fsdd as prep

    data_dir = os.path.abspath(data_dir)
    parent = os.path.dirname(data_dir)
    os.makedirs(parent, exist_ok=True)
    source = tempfile.mkdtemp(prefix="fsdd_source-", dir=parent)
    write_source(source)
    prep.prepare(source, data_dir)
    return {"data.data_dir": data_dir}
