"""A tiny synthetic copy of TIMIT in LDC's layout, for tests.

``<root>/TRAIN/DR<n>/<SPEAKER>/<ID>.WAV`` and ``<root>/TEST/...``, 16 kHz mono 16-bit:

* TEST: the 24 core test speakers (two sentences each, an SI and an SX; ``MDAB0`` also has an
  ``SA1`` that must be skipped) and one other TEST speaker, ``FAKS0`` (DR1), that only
  ``--test_speakers=all`` keeps. ``TEST/dr8`` and its speakers' folders and files are lower
  case (``dr8/mjln0/si1501.wav``, SPHERE content despite the name).
* TRAIN: 4 speakers with SA1, SA2 (skipped), one SI and two SX sentences. ``MCPM0``'s files
  are stored twice, as LDC's ``SX127.WAV`` (SPHERE) and a converted ``SX127.WAV.wav`` (RIFF),
  as some mirrors ship them: the RIFF copy is read. ``.PHN``/``.TXT`` files sit next to the
  audio.
* SPHERE files alternate between byte orders ``01`` (little-endian) and ``10`` (big-endian).

Each file is a tone at ``400 + 80 * i`` Hz (i = the speaker's index in the sorted list of all
fixture speakers, `ALL_SPEAKERS`; an exact 40 Hz FFT bin, ``10 + 2 i``) plus seeded noise, so a
segment says whose it is. Lengths: `num_samples` (0.3, 0.45 or 0.6 s; ``FELC0``'s SX is
0.1 s: 8 frames, one padded segment).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

RATE = 16000
CORE = {
    "DR1": ("MDAB0", "MWBT0", "FELC0"),
    "DR2": ("MTAS1", "MWEW0", "FPAS0"),
    "DR3": ("MJMP0", "MLNT0", "FPKT0"),
    "DR4": ("MLLL0", "MTLS0", "FJLM0"),
    "DR5": ("MBPM0", "MKLT0", "FNLP0"),
    "DR6": ("MCMJ0", "MJDH0", "FMGD0"),
    "DR7": ("MGRT0", "MNJM0", "FDHC0"),
    "DR8": ("MJLN0", "MPAM0", "FMLD0"),
}
OTHER_TEST = ("DR1", "FAKS0")  # a TEST speaker outside the core set
TRAIN = (("DR1", "FCJF0"), ("DR1", "MCPM0"), ("DR2", "FAEM0"), ("DR7", "MADC0"))
DUPLICATED = "MCPM0"  # its files exist as .WAV (SPHERE) and .WAV.wav (RIFF)
LOWER_CASE_DIALECT = "DR8"  # TEST/dr8/<speaker lower>/<id lower>.wav
SHORT = ("FELC0", "SX")  # (speaker, sentence type) of the 0.1 s file
ALL_SPEAKERS = tuple(
    sorted([s for v in CORE.values() for s in v] + [OTHER_TEST[1]] + [s for _, s in TRAIN])
)


def speaker_hz(speaker: str) -> float:
    return 400.0 + 80.0 * ALL_SPEAKERS.index(speaker)


def num_samples(speaker: str, sentence: str) -> int:
    if (speaker, sentence[:2]) == SHORT:
        return 1600
    return 4800 + 2400 * (int(sentence[2:]) % 3)


def expected_segments(samples: int, hop: int = 20) -> int:
    """Segments of a file at 16 kHz: 400-sample windows every 160 samples, 20-frame segments
    every ``hop`` frames, at least one (padded)."""
    frames = 1 + (samples - 400) // 160
    return max(1, 1 + (frames - 20) // hop)


def samples_of(speaker: str, sentence: str) -> np.ndarray:
    n = num_samples(speaker, sentence)
    rng = np.random.default_rng([ALL_SPEAKERS.index(speaker), int(sentence[2:])])
    x = 0.4 * np.sin(2 * np.pi * speaker_hz(speaker) * np.arange(n) / RATE)
    x += 0.003 * rng.standard_normal(n)
    return np.round(x * 32767).astype(np.int16)


def sphere_bytes(
    samples: np.ndarray,
    rate: int = RATE,
    byte_format: str = "01",
    coding: str | None = None,
    extra: dict[str, object] | None = None,
) -> bytes:
    """A NIST SPHERE file (1024-byte header, like LDC's TIMIT) of int16 ``samples``."""
    fields = {
        "database_id": "TIMIT",
        "channel_count": 1,
        "sample_count": len(samples),
        "sample_rate": rate,
        "sample_n_bytes": 2,
        "sample_byte_format": byte_format,
        "sample_sig_bits": 16,
        **({"sample_coding": coding} if coding else {}),
        **(extra or {}),
    }
    lines = ["NIST_1A", "   1024"]
    for key, value in fields.items():
        kind = "-i" if isinstance(value, int) else f"-s{len(str(value))}"
        lines.append(f"{key} {kind} {value}")
    header = ("\n".join(lines) + "\nend_head\n").encode()
    header += b" " * (1024 - len(header))
    dtype = "<i2" if byte_format == "01" else ">i2"
    return header + np.asarray(samples).astype(dtype).tobytes()


def riff_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    data = np.asarray(samples).astype("<i2").tobytes()
    fmt = (
        (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little")
        + (2 * rate).to_bytes(4, "little") + (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
    )
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    body += b"data" + len(data).to_bytes(4, "little") + data
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def _sentences(speaker: str, index: int, train: bool) -> list[str]:
    si, sx = f"SI{700 + 37 * index}", f"SX{10 + 11 * index}"
    if train:
        return ["SA1", "SA2", si, sx, f"SX{11 + 11 * index}"]
    return [si, sx] + (["SA1"] if speaker == "MDAB0" else [])


def write_source(root: str) -> list[dict]:
    """Writes the fixture into ``root`` and returns every utterance written as a dict: part
    ("TRAIN"/"TEST"), dialect, speaker, sentence, samples (int16), the audio file's path
    relative to ``root`` that the converter must read, and its number of samples."""
    written = []
    speakers = [("TEST", d, s) for d, ss in CORE.items() for s in ss]
    speakers += [("TEST", *OTHER_TEST)] + [("TRAIN", d, s) for d, s in TRAIN]
    for index, (part, dialect, speaker) in enumerate(speakers):
        lower = part == "TEST" and dialect == LOWER_CASE_DIALECT
        folder = os.path.join(part, dialect.lower() if lower else dialect)
        folder = os.path.join(folder, speaker.lower() if lower else speaker)
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        for number, sentence in enumerate(_sentences(speaker, index, part == "TRAIN")):
            samples = samples_of(speaker, sentence)
            byte_format = "01" if (index + number) % 2 == 0 else "10"
            name = f"{sentence.lower()}.wav" if lower else f"{sentence}.WAV"
            path = os.path.join(folder, name)
            with open(os.path.join(root, path), "wb") as f:
                f.write(sphere_bytes(samples, byte_format=byte_format))
            if speaker == DUPLICATED:
                path += ".wav"
                with open(os.path.join(root, path), "wb") as f:
                    f.write(riff_bytes(samples))
            with open(os.path.join(root, folder, f"{sentence}.PHN"), "w") as f:
                f.write("0 3050 h#\n")
            written.append(
                {
                    "part": part,
                    "dialect": dialect,
                    "speaker": speaker,
                    "sentence": sentence,
                    "samples": samples,
                    "path": path,
                    "num_samples": len(samples),
                }
            )
    return written


def decode_speaker(spectrum: np.ndarray) -> str:
    """The speaker read back from a log-magnitude segment (200 bins, original units)."""
    mean = np.asarray(spectrum).reshape(-1, 200).mean(0)
    peak = 5 + int(np.argmax(mean[5:80]))
    return ALL_SPEAKERS[round((peak * RATE / 400 - 400) / 80)]


def prepare_for_tests(data_dir: str) -> dict[str, str]:
    """Writes the fixture into a fresh folder next to ``data_dir``, prepares it into
    ``data_dir`` and returns the config overrides that point training at that build."""
    from data_prep import timit as prep

    data_dir = os.path.abspath(data_dir)
    parent = os.path.dirname(data_dir)
    os.makedirs(parent, exist_ok=True)
    source = tempfile.mkdtemp(prefix="timit_source-", dir=parent)
    write_source(source)
    prep.prepare(source, data_dir)
    return {"data.data_dir": data_dir}
