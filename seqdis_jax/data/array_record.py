"""TFDS `array_record` datasets written and read without TensorFlow.

TFDS 4.9 builds and reads `array_record` datasets with no TensorFlow installed when every
feature is a `tfds.features.Tensor` with `Encoding.BYTES`, a `Scalar` or a `ClassLabel` (a
`Video` or `Image` feature imports TF), see STYLE.md. `write_dataset` writes such a dataset with
a real `GeneratorBasedBuilder`, so the result is an ordinary TFDS dataset directory
(``<data_dir>/<name>/<version>/``) that `tfds.builder_from_directory`, `tfds.data_source` and
`grain` read; `load_split` returns a random-access source for `grain.MapDataset.source`.

Records keep their order (``disable_shuffling``): record ``i`` of a split is the ``i``-th one
written. The dtypes written are kept in the dataset's metadata, so a class label written as
int32 reads back as int32 (TFDS itself stores class labels as int64).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import tempfile
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from seqdis_jax.errors import BadDataError, NotPreparedError

DTYPES_KEY = "dtypes"  # metadata entry: feature name -> numpy dtype name written
FINGERPRINT_KEY = "fingerprint"  # metadata entry: caller's hash of the inputs

Records = Mapping[str, np.ndarray] | Iterable[Mapping[str, Any]]


@dataclasses.dataclass(frozen=True)
class Feature:
    """One field of a record: a fixed-shape array, or a class label when ``names`` is given."""

    dtype: str  # numpy dtype name, e.g. "uint8", "int32"
    shape: tuple[int, ...] = ()
    names: tuple[str, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.names is not None:
            if self.shape or not np.issubdtype(self.dtype, np.integer):
                raise ValueError(f"a class label is an integer scalar, got {self}")
            object.__setattr__(self, "names", tuple(self.names))

    def to_tfds(self) -> tfds.features.FeatureConnector:
        """The TF-free TFDS feature connector for this field."""
        if self.names is not None:
            return tfds.features.ClassLabel(names=list(self.names))
        if not self.shape:
            return tfds.features.Scalar(dtype=np.dtype(self.dtype))
        return tfds.features.Tensor(
            shape=self.shape, dtype=np.dtype(self.dtype), encoding=tfds.features.Encoding.BYTES
        )


def _check(name: str, feature: Feature, value: Any) -> np.ndarray:
    """``value`` as an array of the feature's dtype and shape; a wrong one is an error."""
    array = np.asarray(value)
    if not feature.shape and array.shape == () and np.can_cast(array, feature.dtype):
        return array.astype(feature.dtype)  # Python scalars are fine for scalar fields
    if array.shape != feature.shape or array.dtype != feature.dtype:
        raise ValueError(
            f"feature {name!r} needs {feature.dtype} {feature.shape}, got {array.dtype} "
            f"{array.shape}"
        )
    return array


def _iter_records(records: Records, features: Mapping[str, Feature]) -> Iterator[dict]:
    """Checked records of a split given as a dict of arrays (one record per row) or records."""
    if isinstance(records, Mapping):
        if set(records) != set(features):
            raise ValueError(f"split has keys {sorted(records)}, features {sorted(features)}")
        lengths = {len(v) for v in records.values()}
        if len(lengths) != 1:
            raise ValueError(f"all arrays of a split need the same length, got {lengths}")
        arrays = records
        records = ({k: v[i] for k, v in arrays.items()} for i in range(lengths.pop()))
    for record in records:
        if set(record) != set(features):
            raise ValueError(f"record has keys {sorted(record)}, features {sorted(features)}")
        yield {k: _check(k, features[k], v) for k, v in record.items()}


class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Writes the given splits. `_builder_class` sets `name` and `VERSION` per dataset."""

    VERSION = tfds.core.Version("1.0.0")
    # No download checksums to find. (Looking for them next to a class in a package needs the
    # `importlib_resources` backport in TFDS 4.9.10, which Python 3.11 installs lack.)
    code_path = None

    def __init__(
        self,
        *,
        splits: Mapping[str, Records],
        features: Mapping[str, Feature],
        info: Mapping[str, Any],
        **kwargs,
    ):
        self._splits = splits
        self._features = features
        self._info_kwargs = info
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, disable_shuffling=True, **self._info_kwargs)

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        del dl_manager
        return {split: self._generate_examples(records) for split, records in self._splits.items()}

    def _generate_examples(self, records: Records) -> Iterator[tuple[int, dict]]:
        yield from enumerate(_iter_records(records, self._features))


def _builder_class(name: str, version: str) -> type[_Builder]:
    """A one-off, unregistered builder class for dataset ``name`` (TFDS names by class)."""

    def body(ns: dict) -> None:
        ns.update(name=name, VERSION=tfds.core.Version(version), __module__=__name__)

    return types.new_class(
        "ArraysBuilder", (_Builder,), {"skip_registration": True}, exec_body=body
    )


def default_data_dir() -> str:
    """TFDS's default: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def version_dir(name: str, data_dir: str | os.PathLike, version: str) -> str:
    """``<data_dir>/<name>/<version>``: where TFDS keeps one prepared version."""
    return os.path.join(os.path.expanduser(os.fspath(data_dir)), name, version)


def read_metadata(name: str, data_dir: str | os.PathLike, version: str) -> dict | None:
    """The metadata of a complete prepared version, or None when there is none."""
    path = version_dir(name, data_dir, version)
    if not os.path.isfile(os.path.join(path, "dataset_info.json")):
        return None
    try:
        with open(os.path.join(path, "metadata.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _replace_dir(staged: str, final: str) -> None:
    """Moves ``staged`` to ``final``; an existing ``final`` is removed only once replaced."""
    old = None
    if os.path.exists(final):
        prefix = f".{os.path.basename(final)}.old-"
        old = tempfile.mkdtemp(prefix=prefix, dir=os.path.dirname(final))
        os.rename(final, os.path.join(old, "data"))
    try:
        os.rename(staged, final)
    except BaseException:
        if old is not None:
            os.rename(os.path.join(old, "data"), final)
            os.rmdir(old)
        raise
    if old is not None:
        shutil.rmtree(old)


def write_dataset(
    name: str,
    data_dir: str | os.PathLike,
    splits: Mapping[str, Records],
    features: Mapping[str, Feature],
    *,
    version: str = "1.0.0",
    description: str = "",
    homepage: str | None = None,
    citation: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    fingerprint: str = "",
    expected_sizes: Mapping[str, int] | None = None,
) -> str:
    """Writes ``splits`` as the TFDS array_record dataset ``<data_dir>/<name>/<version>``.

    Each split is a dict of equally long arrays (one record per row) or an iterable of record
    dicts; every record must match ``features`` exactly (dtype and shape). The dataset is built
    in a hidden staging directory next to its final place and moved there only when complete,
    so a failure leaves any previously prepared version untouched and never a partial one.
    ``fingerprint`` (e.g. a hash of the inputs) is stored in the metadata for `read_metadata`;
    ``expected_sizes`` (records per split) are checked before the dataset is moved in place.
    Returns the version directory.
    """
    if not splits:
        raise ValueError("no splits to write")
    dataset_dir = os.path.join(os.path.expanduser(os.fspath(data_dir)), name)
    os.makedirs(dataset_dir, exist_ok=True)
    info = {
        "description": description,
        "homepage": homepage,
        "citation": citation,
        "features": tfds.features.FeaturesDict({k: f.to_tfds() for k, f in features.items()}),
        "metadata": tfds.core.MetadataDict(
            {
                **(metadata or {}),
                DTYPES_KEY: {k: f.dtype for k, f in features.items()},
                FINGERPRINT_KEY: fingerprint,
            }
        ),
    }
    staging = tempfile.mkdtemp(prefix=f".{version}.incomplete-", dir=dataset_dir)
    try:
        builder = _builder_class(name, version)(
            splits=splits,
            features=features,
            info=info,
            data_dir=staging,
            file_format="array_record",
        )
        # TFDS prints the staging path to stdout; what counts is where the dataset ends up.
        with contextlib.redirect_stdout(io.StringIO()):
            builder.download_and_prepare(download_dir=os.path.join(staging, "downloads"))
        sizes = {split: builder.info.splits[split].num_examples for split in splits}
        if expected_sizes is not None and sizes != dict(expected_sizes):
            raise ValueError(f"wrote {sizes} records per split, expected {dict(expected_sizes)}")
        final = version_dir(name, data_dir, version)
        _replace_dir(os.fspath(builder.data_dir), final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(dataset_dir)  # only if empty: the first write of this dataset failed
    return final


# ------------------------------------------------------------------ tf.train.Example, decoded
# TFDS decodes each record through protobuf's upb messages, and protobuf's Python runtime calls
# glibc's malloc_trim(0) at every 10,000th block its message arenas free (upb_trim_allocfunc):
# in a Sprites training run that madvised ~590 MB of free heap pages away at once, from the
# input thread, for the step to fault in again (docs/results.md, "malloc_trim"). The records
# written here hold only fixed-shape numeric fields, so they are decoded from the wire format
# directly (https://protobuf.dev/programming-guides/encoding/): Example{1: Features},
# Features{1: map entry{1: key, 2: Feature}}, Feature{1: BytesList, 2: FloatList,
# 3: Int64List}, each list's values in its field 1, packed or not.


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("malformed tf.train.Example: a varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message: an int for varints, a memoryview for
    length-delimited and fixed-size fields."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 2, 5):
            if wire == 2:
                size, pos = _varint(buf, pos)
            else:
                size = 8 if wire == 1 else 4
            value = buf[pos:pos + size]
            if len(value) != size:
                raise ValueError("malformed tf.train.Example: a field runs past its message")
            pos += size
        else:
            raise ValueError(f"malformed tf.train.Example: wire type {wire}")
        yield number, wire, value


def _int64s(field_values: Iterable[tuple[int, int, Any]]) -> list[int]:
    values = []
    for _, wire, value in field_values:
        if wire == 0:
            values.append(value)
        else:  # packed
            pos = 0
            while pos < len(value):
                v, pos = _varint(value, pos)
                values.append(v)
    return [v - (1 << 64) if v >= 1 << 63 else v for v in values]


def decode_example(record: bytes, shapes: Mapping[str, tuple[int, ...]],
                   dtypes: Mapping[str, np.dtype]) -> dict[str, np.ndarray]:
    """The fields of one serialized tf.train.Example of fixed-shape numeric features, as
    numpy arrays of `shapes` and `dtypes` (what TFDS's `deserialize_example_np` returns for a
    `Tensor` with `Encoding.BYTES`, a `Scalar` or a `ClassLabel`, without protobuf)."""
    out = {}
    for _, _, features in _fields(memoryview(record)):
        for _, _, entry in _fields(features):
            key = feature = None
            for number, _, value in _fields(entry):
                if number == 1:
                    key = bytes(value).decode()
                elif number == 2:
                    feature = value
            if key not in shapes:
                continue
            for kind, _, values in _fields(feature):
                items = list(_fields(values))
                if kind == 1:  # BytesList: one tensor's raw bytes
                    if len(items) != 1:
                        raise ValueError(f"feature {key!r} holds {len(items)} byte strings, "
                                         "not 1")
                    array = np.frombuffer(items[0][2], dtype=dtypes[key])
                elif kind == 2:  # FloatList
                    array = np.concatenate(
                        [np.frombuffer(v, "<f4") for _, _, v in items] or [np.zeros(0, "<f4")])
                elif kind == 3:  # Int64List
                    array = np.asarray(_int64s(items), np.int64)
                else:
                    raise ValueError(f"feature {key!r} has an unknown list kind {kind}")
                out[key] = array.reshape(shapes[key])
    missing = sorted(set(shapes) - set(out))
    if missing:
        raise ValueError(f"the record has no feature(s) {missing}")
    return out


def _wire_decodable(features: Any) -> bool:
    """Whether every feature is a fixed-shape numeric Tensor (BYTES or no encoding), Scalar or
    ClassLabel: what `decode_example` reads. Other datasets go through TFDS's decoder."""
    for feature in features.values():
        if not isinstance(feature, tfds.features.Tensor):  # Scalar, ClassLabel subclass it
            return False
        encoding = getattr(feature, "_encoding", tfds.features.Encoding.NONE)
        if encoding not in (tfds.features.Encoding.NONE, tfds.features.Encoding.BYTES):
            return False
        if not np.issubdtype(feature.np_dtype, np.number) or None in feature.shape:
            return False
    return True


class ArrayRecordSource:
    """Random-access records (dicts of numpy arrays of the written dtypes) of one split;
    a `grain.MapDataset.source`."""

    def __init__(self, source: Sequence[Mapping[str, Any]], dtypes: Mapping[str, str], info: Any):
        self._source = source
        self._dtypes = {k: np.dtype(v) for k, v in dtypes.items()}
        self.info = info  # tfds.core.DatasetInfo: features, class names, split sizes, metadata
        # The raw records (array_record's reader under TFDS's source), decoded here.
        features = info.features if info is not None else None
        self._wire = getattr(source, "data_source", None)
        if features is None or self._wire is None or not _wire_decodable(features):
            self._wire = None
        else:
            self._shapes = {k: tuple(f.shape) for k, f in features.items()}
            self._stored = {k: np.dtype(f.np_dtype) for k, f in features.items()}
        self._raw = self._wire  # the records this source decodes itself; None: TFDS decodes

    @property
    def decoder(self) -> str:
        """`"wire"`: records decoded here (`decode_example`, the default whenever every
        feature is a fixed-shape tensor or a class label); `"tfds"`: TFDS's decoder. Setting
        it switches (for benchmarks and tests); `"wire"` is refused where it can't read one
        of the features."""
        return "wire" if self._raw is not None else "tfds"

    @decoder.setter
    def decoder(self, name: str) -> None:
        if name not in ("wire", "tfds"):
            raise ValueError(f"decoder={name!r}: use 'wire' or 'tfds'")
        if name == "wire" and self._wire is None:
            raise ValueError("decoder='wire': this split has a feature the wire decoder does "
                             "not read (not a fixed-shape numeric tensor or class label); "
                             "use 'tfds'")
        self._raw = self._wire if name == "wire" else None

    def __len__(self) -> int:
        return len(self._source)

    def _convert(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, self._dtypes[k]) for k, v in record.items()}

    def _decode(self, raw: bytes) -> dict[str, np.ndarray]:
        return self._convert(decode_example(raw, self._shapes, self._stored))

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if self._raw is not None:
            return self._decode(self._raw[index])
        return self._convert(self._source[index])

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
        if self._raw is not None:
            return [self._decode(r) for r in self._raw.__getitems__(indices)]
        return [self._convert(r) for r in self._source.__getitems__(indices)]

    def __repr__(self) -> str:
        return f"ArrayRecordSource({self._source!r})"


def _latest_version(dataset_dir: str) -> str | None:
    versions = []
    for entry in os.listdir(dataset_dir) if os.path.isdir(dataset_dir) else []:
        path = os.path.join(dataset_dir, entry)
        if tfds.core.Version.is_valid(entry) and os.path.isfile(
            os.path.join(path, "dataset_info.json")
        ):
            versions.append(tfds.core.Version(entry))
    return str(max(versions)) if versions else None


def load_split(
    name: str, data_dir: str | os.PathLike, split: str, version: str | None = None
) -> ArrayRecordSource:
    """Split ``split`` of the prepared dataset ``<data_dir>/<name>/<version>`` (default: the
    newest prepared version). Raises `NotPreparedError` when it is not there, `BadDataError`
    when the split has no records."""
    dataset_dir = os.path.join(os.path.expanduser(os.fspath(data_dir)), name)
    version = version or _latest_version(dataset_dir)
    if version is None or read_metadata(name, data_dir, version) is None:
        where = os.path.join(dataset_dir, version or "<version>")
        raise NotPreparedError(f"dataset {name!r} is not prepared: no {where}/dataset_info.json")
    builder = tfds.builder_from_directory(version_dir(name, data_dir, version))
    if split not in builder.info.splits:
        splits = sorted(builder.info.splits)
        raise ValueError(f"dataset {name!r} has splits {splits}, not {split!r}")
    if builder.info.splits[split].num_examples == 0:  # TFDS would fail on "0 paths"
        raise BadDataError(f"dataset {name!r} has no records in its {split!r} split "
                           f"({version_dir(name, data_dir, version)})")
    dtypes = dict(builder.info.metadata.get(DTYPES_KEY) or {})
    for key, feature in builder.info.features.items():
        dtypes.setdefault(key, np.dtype(feature.np_dtype).name)
    return ArrayRecordSource(builder.as_data_source(split=split), dtypes, builder.info)
