"""TFRecord files of `tf.train.Example`s, read and written without TensorFlow.

A TFRecord file is a run of records `uint64 length | uint32 masked_crc32c(length) | data | uint32
masked_crc32c(data)`, little endian, optionally inside one GZIP stream. Both checksums are verified. Each record's
`Example` is walked just far enough to find where each feature's values lie in the file; the values of a feature
are then decoded for all records of a shard at once with numpy, so per-record Python work stays small.
"""

import gzip
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import numpy as np


class TFRecordError(ValueError):
    """A file that cannot be read as TFRecords of Examples; the message names the file, record and byte offset."""

    def __init__(self, path, record: int | None, offset: int | None, problem: str):
        where = str(path)
        if record is not None:
            where += f", record {record}"
        if offset is not None:
            where += f" (byte offset {offset}{' in the decompressed stream' if is_gzip(path) else ''})"
        super().__init__(f"{where}: {problem}")
        self.path, self.record, self.offset = Path(path), record, offset


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def is_gzip(path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def read_file_bytes(path: Path) -> bytes:
    """The file's records as bytes: GZIP (recognised by its magic bytes, whatever the name) is decompressed."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise TFRecordError(path, None, None, f"GZIP stream is corrupt or truncated ({error})") from error


def record_spans(path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each record's payload in `data`, with both checksums verified."""
    starts, ends = [], []
    offset, size = 0, len(data)
    unpack_header = struct.Struct("<QI").unpack_from
    unpack_crc = struct.Struct("<I").unpack_from
    crc = google_crc32c.value
    while offset < size:
        if size - offset < 12:
            raise TFRecordError(path, len(starts), offset, f"truncated record header ({size - offset} of 12 bytes)")
        length, length_crc = unpack_header(data, offset)
        value = crc(data[offset : offset + 8])
        if (((value >> 15) | (value << 17)) + 0xA282EAD8) & 0xFFFFFFFF != length_crc:
            hint = " (is this a TFRecord file?)" if not starts else ""
            raise TFRecordError(path, len(starts), offset, f"length checksum mismatch{hint}")
        start, end = offset + 12, offset + 12 + length
        if end + 4 > size:
            raise TFRecordError(path, len(starts), offset, f"truncated record: {length} data bytes announced, "
                                                           f"{max(0, size - start - 4)} present")
        value = crc(data[start:end])
        if (((value >> 15) | (value << 17)) + 0xA282EAD8) & 0xFFFFFFFF != unpack_crc(data, end)[0]:
            raise TFRecordError(path, len(starts), offset, "data checksum mismatch (the record is corrupt)")
        starts.append(start)
        ends.append(end)
        offset = end + 4
    return np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)


# --- the Example wire format -----------------------------------------------------------------------------------------
# Example { Features features = 1 }  Features { map<string, Feature> feature = 1 }
# Feature { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3 } }
# XxxList { repeated xxx value = 1 [packed] }

KIND_NAMES = {1: "bytes_list", 2: "float_list", 3: "int64_list"}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _skip(data: bytes, pos: int, wire_type: int) -> int:
    if wire_type == 0:
        return _varint(data, pos)[1]
    if wire_type == 1:
        return pos + 8
    if wire_type == 2:
        length, pos = _varint(data, pos)
        return pos + length
    if wire_type == 5:
        return pos + 4
    raise ValueError(f"unsupported protobuf wire type {wire_type}")


def example_feature_spans(data: bytes, start: int, end: int, wanted: dict[bytes, str]):
    """
    For one serialized Example in `data[start:end]`: {feature name: (kind, payload start, payload end, packed)}
    for the features named in `wanted`. `packed` is False when the values are written one by one (legal protobuf,
    but not what TensorFlow writes); the payload is then the whole list message.
    """
    found = {}
    pos = start
    while pos < end:
        tag, pos = _varint(data, pos)
        if tag != 0x0A:  # not Example.features
            pos = _skip(data, pos, tag & 7)
            continue
        length, pos = _varint(data, pos)
        features_end = pos + length
        while pos < features_end:
            tag, pos = _varint(data, pos)
            if tag != 0x0A:  # not Features.feature (a map entry)
                pos = _skip(data, pos, tag & 7)
                continue
            length, pos = _varint(data, pos)
            entry_end = pos + length
            name, feature = None, None
            while pos < entry_end:
                tag, pos = _varint(data, pos)
                if tag == 0x0A:  # key
                    length, pos = _varint(data, pos)
                    name = data[pos : pos + length]
                    pos += length
                elif tag == 0x12:  # value: a Feature
                    length, pos = _varint(data, pos)
                    feature = (pos, pos + length)
                    pos += length
                else:
                    pos = _skip(data, pos, tag & 7)
            if name in wanted and feature is not None:
                found[wanted[name]] = _list_payload(data, *feature)
    if pos != end:
        raise ValueError("the Example's fields run past the end of the record")
    return found


def _list_payload(data: bytes, start: int, end: int):
    if start == end:  # a Feature with no list set: no values
        return ("int64_list", start, start, True)
    tag, pos = _varint(data, start)
    kind = KIND_NAMES.get(tag >> 3)
    if kind is None or tag & 7 != 2:
        raise ValueError(f"unexpected Feature field (tag {tag})")
    length, pos = _varint(data, pos)
    list_end = pos + length
    if pos == list_end:
        return (kind, pos, pos, True)
    inner_tag, inner_pos = _varint(data, pos)
    if kind != "bytes_list" and inner_tag == 0x0A:
        inner_length, inner_pos = _varint(data, inner_pos)
        if inner_pos + inner_length == list_end:  # one packed run: the usual case
            return (kind, inner_pos, list_end, True)
    return (kind, pos, list_end, False)


def decode_varints(buffer: np.ndarray) -> np.ndarray:
    """All varints of a byte array (uint8), as int64: one vectorised pass per byte position of a varint."""
    ends = np.flatnonzero(buffer < 0x80)
    if len(ends) and ends[-1] != len(buffer) - 1 or (len(buffer) and not len(ends)):
        raise ValueError("a varint runs past the end of its list")
    starts = np.empty_like(ends)
    starts[0:1] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    values = (buffer[starts] & 0x7F).astype(np.uint64)
    for k in range(1, int(lengths.max(initial=1))):
        longer = np.flatnonzero(lengths > k)
        values[longer] |= (buffer[starts[longer] + k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
    return values.view(np.int64)


def gather_bytes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The concatenation of `data[starts[i]:ends[i]]` for all i, without a Python loop."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.uint8)
    shift = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return data[np.arange(total) + shift]


def _values_of_unpacked(kind: str, data: bytes, start: int, end: int) -> list:
    values, pos = [], start
    while pos < end:
        tag, pos = _varint(data, pos)
        if tag == 0x08:
            value, pos = _varint(data, pos)
            values.append(value - (1 << 64) if value >= 1 << 63 else value)
        elif tag == 0x0D:
            values.append(struct.unpack_from("<f", data, pos)[0])
            pos += 4
        elif tag == 0x0A and kind != "bytes_list":
            length, pos = _varint(data, pos)
            chunk = np.frombuffer(data, np.uint8, length, pos)
            values.extend(decode_varints(chunk).tolist() if kind == "int64_list"
                          else np.frombuffer(chunk.tobytes(), "<f4").tolist())
            pos += length
        elif tag == 0x0A:
            length, pos = _varint(data, pos)
            values.append(data[pos : pos + length])
            pos += length
        else:
            pos = _skip(data, pos, tag & 7)
    return values


def _varints_at(buffer: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The varint starting at each position (vectorised) and the position after it. `buffer` has zero padding."""
    values = np.zeros(len(positions), dtype=np.uint64)
    after = positions.copy()
    active = np.ones(len(positions), dtype=bool)
    for k in range(10):
        rows = np.flatnonzero(active)
        if not len(rows):
            break
        byte = buffer[positions[rows] + k]
        values[rows] |= (byte & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        done = byte < 0x80
        after[rows[done]] = positions[rows[done]] + k + 1
        active[rows[done]] = False
    return values.astype(np.int64), after


TAG_OF_KIND = {0x0A: "bytes_list", 0x12: "float_list", 0x1A: "int64_list"}


def locate_features(buffer: np.ndarray, starts: np.ndarray, ends: np.ndarray, wanted: dict[bytes, str]):
    """
    Where each wanted feature's packed values lie, for all records at once: the Examples TensorFlow writes have
    one shape (features -> map entries of key then value -> one packed list), and it is walked level by level
    with numpy over every record. Records of any other shape are flagged `irregular`, for the exact per-record
    walk of `example_feature_spans`.

    Returns ({column: (record indices, payload starts, payload ends, kind codes)}, irregular mask).
    """
    count = len(starts)
    irregular = np.zeros(count, dtype=bool)
    # Example: exactly one field, the features message, filling the record.
    irregular |= buffer[starts] != 0x0A
    length, position = _varints_at(buffer, starts + 1)
    irregular |= (position + length != ends) & (ends > starts)
    cursor, features_end = position, ends
    found = {column: ([], [], [], []) for column in wanted.values()}
    rows = np.flatnonzero(~irregular & (cursor < features_end))
    names = [(np.frombuffer(name, dtype=np.uint8), column) for name, column in wanted.items()]
    while len(rows):
        at = cursor[rows]
        bad = buffer[at] != 0x0A  # a map entry
        entry_length, entry_start = _varints_at(buffer, at + 1)
        entry_end = entry_start + entry_length
        bad |= buffer[entry_start] != 0x0A  # its key first
        key_length, key_start = _varints_at(buffer, entry_start + 1)
        value_tag_at = key_start + key_length
        bad |= buffer[value_tag_at] != 0x12  # then its value, a Feature
        feature_length, feature_start = _varints_at(buffer, value_tag_at + 1)
        bad |= feature_start + feature_length != entry_end
        kind_tag = buffer[feature_start]
        list_length, list_start = _varints_at(buffer, feature_start + 1)
        empty_feature = feature_length == 0
        bad |= ~empty_feature & ((list_start + list_length != entry_end) | ~np.isin(kind_tag, list(TAG_OF_KIND)))
        # The list: empty, or one packed run of values.
        empty_list = empty_feature | (list_length == 0)
        packed_length, payload_start = _varints_at(buffer, list_start + 1)
        bad |= ~empty_list & ((buffer[list_start] != 0x0A) | (payload_start + packed_length != entry_end))
        bad |= entry_end > features_end[rows]
        payload_start = np.where(empty_list, entry_end, payload_start)
        for name, column in names:
            match = ~bad & (key_length == len(name))
            for k in range(len(name)):
                candidates = np.flatnonzero(match)
                match[candidates] &= buffer[key_start[candidates] + k] == name[k]
            hit = np.flatnonzero(match)
            record_index, starts_list, ends_list, kinds = found[column]
            record_index.append(rows[hit])
            starts_list.append(payload_start[hit])
            ends_list.append(entry_end[hit])
            kinds.append(np.where(empty_feature[hit], 0x1A, kind_tag[hit]))
        irregular[rows[bad]] = True
        cursor[rows] = entry_end
        rows = rows[~bad]
        rows = rows[cursor[rows] < features_end[rows]]
    located = {}
    for column, parts in found.items():
        record_index, payload_starts, payload_ends, kinds = (np.concatenate(p) if p else np.empty(0, np.int64)
                                                             for p in parts)
        # A feature named twice in one record: the exact walk decides (the last one wins, as in protobuf maps).
        repeated = np.bincount(record_index, minlength=count) > 1
        irregular |= repeated
    for column, parts in found.items():
        record_index, payload_starts, payload_ends, kinds = (np.concatenate(p) if p else np.empty(0, np.int64)
                                                             for p in parts)
        keep = ~irregular[record_index]
        located[column] = (record_index[keep], payload_starts[keep], payload_ends[keep], kinds[keep])
    return located, irregular


@dataclass
class FeatureColumn:
    """One feature over the records of a file: flat values, and how many belong to each record."""

    values: np.ndarray
    counts: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(self.counts)))


@dataclass
class ExampleFile:
    path: Path
    record_offsets: np.ndarray  # byte offset of each record in the (decompressed) file
    columns: dict[str, FeatureColumn] = field(default_factory=dict)

    def __len__(self):
        return len(self.record_offsets)


def read_examples(path, features: dict[str, str], required: tuple[str, ...] = ()) -> ExampleFile:
    """
    Read the named features of every Example of one TFRecord file. `features` maps each feature name in the file
    to the column name to give it; features not named are ignored. A record without a `required` column, or with
    a column of another kind than int64/float, raises a `TFRecordError` naming file, record and offset.
    """
    path = Path(path)
    raw = read_file_bytes(path)
    starts, ends = record_spans(path, raw)
    record_offsets = starts - 12
    buffer = np.frombuffer(raw + bytes(16), dtype=np.uint8)  # zero padding: vectorised reads never run off
    wanted = {name.encode(): column for name, column in features.items()}
    name_of = {column: name for name, column in features.items()}
    located, irregular = locate_features(buffer, starts, ends, wanted)

    # Records of another shape: the exact walk, one by one (TensorFlow never writes them; other writers may).
    extra = {column: {} for column in features.values()}
    for index in np.flatnonzero(irregular).tolist():
        try:
            spans = example_feature_spans(raw, int(starts[index]), int(ends[index]), wanted)
        except (ValueError, IndexError) as error:
            raise TFRecordError(path, index, int(record_offsets[index]),
                                f"not a valid tf.train.Example ({error})") from error
        for column, (kind, value_start, value_end, packed) in spans.items():
            extra[column][index] = (kind, value_start, value_end, packed)

    result = ExampleFile(path, record_offsets)
    for column in features.values():
        record_index, payload_starts, payload_ends, kind_codes = located[column]
        present = np.zeros(len(starts), dtype=bool)
        present[record_index] = True
        present[list(extra[column])] = True
        if column in required and not present.all():
            index = int(np.flatnonzero(~present)[0])
            raise TFRecordError(path, index, int(record_offsets[index]),
                                f"required feature {name_of[column]!r} is missing")
        kinds = {TAG_OF_KIND[int(code)] for code in np.unique(kind_codes)}
        kinds |= {kind for kind, *_ in extra[column].values()}
        if "bytes_list" in kinds or len(kinds) > 1:
            index = _first_record_of_other_kind(record_index, kind_codes, extra[column])
            raise TFRecordError(path, index, int(record_offsets[index]),
                                f"feature {name_of[column]!r} is a {' and a '.join(sorted(kinds))}; "
                                "expected one of int64_list or float_list in every record")
        kind = kinds.pop() if kinds else "int64_list"
        try:
            values, counts = _decode_column(buffer, kind, record_index, payload_starts, payload_ends, len(starts))
        except ValueError as error:
            index = int(getattr(error, "record", 0))
            raise TFRecordError(path, index, int(record_offsets[index]),
                                f"feature {name_of[column]!r}: {error}") from error
        if extra[column]:
            values, counts = _merge_irregular(raw, values, counts, extra[column], kind)
        result.columns[column] = FeatureColumn(values, counts)
    return result


def _first_record_of_other_kind(record_index, kind_codes, extra) -> int:
    candidates = [int(record_index[i]) for i in np.flatnonzero(kind_codes != kind_codes[0])] if len(kind_codes) else []
    candidates += [i for i, (kind, *_) in extra.items() if kind == "bytes_list"]
    candidates += [int(record_index[i]) for i in np.flatnonzero(kind_codes == 0x0A)]
    return min(candidates) if candidates else 0


def _decode_column(buffer, kind, record_index, payload_starts, payload_ends, num_records):
    order = np.argsort(record_index, kind="stable")  # values must come out in record order
    record_index, payload_starts, payload_ends = record_index[order], payload_starts[order], payload_ends[order]
    payload = gather_bytes(buffer, payload_starts, payload_ends)
    lengths = payload_ends - payload_starts
    if kind == "int64_list":
        cut = np.flatnonzero((lengths > 0) & (buffer[np.maximum(payload_ends - 1, 0)] >= 0x80))
        if len(cut):
            error = ValueError("an int64 value is cut short")
            error.record = int(record_index[cut[0]])
            raise error
        values = decode_varints(payload)
        # Each record's count is the number of varint terminators inside its payload.
        terminators = np.concatenate(([0], np.cumsum(payload < 0x80)))
        bounds = np.concatenate(([0], np.cumsum(lengths)))
        per_record = terminators[bounds[1:]] - terminators[bounds[:-1]]
    else:
        uneven = np.flatnonzero(lengths % 4)
        if len(uneven):
            error = ValueError("a float list is not a multiple of 4 bytes")
            error.record = int(record_index[uneven[0]])
            raise error
        values = payload.view("<f4").astype(np.float32) if len(payload) else np.empty(0, np.float32)
        per_record = lengths // 4
    counts = np.zeros(num_records, dtype=np.int64)
    counts[record_index] = per_record
    return values, counts


def _merge_irregular(raw: bytes, values, counts, extra: dict, kind: str):
    """Insert the values of the records read one by one into a column decoded in bulk."""
    dtype = np.int64 if kind == "int64_list" else np.float32
    offsets = np.concatenate(([0], np.cumsum(counts)))
    pieces = []
    for index in range(len(counts)):
        if index in extra:
            kind_here, start, end, packed = extra[index]
            if packed:
                chunk = np.frombuffer(raw, np.uint8, end - start, start)
                decoded = decode_varints(chunk) if kind == "int64_list" else chunk.view("<f4")
            else:
                decoded = _values_of_unpacked(kind_here, raw, start, end)
            pieces.append(np.asarray(decoded, dtype=dtype))
            counts[index] = len(pieces[-1])
        else:
            pieces.append(values[offsets[index] : offsets[index + 1]])
    return (np.concatenate(pieces) if pieces else values.astype(dtype)), counts


# --- writing (for conversions' tests, fixtures and benchmarks) -------------------------------------------------------

def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return _encode_varint(field_number << 3 | 2) + _encode_varint(len(payload)) + payload


def serialize_example(features: dict[str, list | np.ndarray]) -> bytes:
    """A tf.train.Example: int lists become int64_list, float lists float_list, bytes lists bytes_list."""
    entries = []
    for name, values in features.items():
        values = list(values.tolist() if isinstance(values, np.ndarray) else values)
        if values and isinstance(values[0], (bytes, str)):
            inner = b"".join(_length_delimited(1, v.encode() if isinstance(v, str) else v) for v in values)
            feature = _length_delimited(1, inner)
        elif values and isinstance(values[0], float):
            feature = _length_delimited(2, _length_delimited(1, struct.pack(f"<{len(values)}f", *values)))
        else:
            feature = _length_delimited(3, _length_delimited(1, b"".join(_encode_varint(v) for v in values)))
        entries.append(_length_delimited(1, _length_delimited(1, name.encode()) + _length_delimited(2, feature)))
    return _length_delimited(1, b"".join(entries))


def frame_record(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_crc32c(length)) + payload + struct.pack("<I", masked_crc32c(payload))


def write_tfrecord(path, payloads, compress: bool = False) -> None:
    """Write serialized records as a TFRecord file (one GZIP stream when `compress`)."""
    data = b"".join(frame_record(p) for p in payloads)
    Path(path).write_bytes(gzip.compress(data) if compress else data)
