"""Reading one delivered file into raw text fields, or naming the file rule it breaks.

A delivered file becomes a polars frame of text columns (the contract's columns,
exactly as delivered: no trimming, no type coercion) plus ``source_line``, the
physical line of the row (header = line 1; for Parquet, row number + 1), and
``_malformed`` for rows whose field count or quoting is wrong. File-level
problems raise :class:`FileRuleBroken` with a stable rule code and one line of
detail; nothing here raises anything else for bad bytes.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa

from schemas.columns import AVAIN_COLUMNS, COLUMNS, KELA_COLUMNS, Column

Extract = Literal["kela", "avain"]

KELA_NAME = re.compile(r"toimeentulotuki_(\d{4})(0[1-9]|1[0-2])\.(csv|parquet)")
AVAIN_NAME = re.compile(r"avain_(\d{3})_(\d{4})\.(csv|parquet)")
KELA_LIKE = re.compile(r"toimeentulotuki_.*", re.IGNORECASE)
AVAIN_LIKE = re.compile(r"avain_.*", re.IGNORECASE)
SEPARATOR = ";"
BOM = "\ufeff"
BOM_BYTES = BOM.encode("utf-8")


class FileRuleBroken(Exception):
    """A delivered file breaks a file-level rule; its rows are not loaded."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True)
class DeliveredFile:
    """A file of a delivery, identified by its name."""

    path: Path
    extract: Extract
    period: str  # kela: YYYYMM; avain: KKK_YYYY
    file_month: str | None = None
    file_kuntanumero: str | None = None
    file_year: int | None = None

    @property
    def name(self) -> str:
        """The file name as delivered."""
        return self.path.name

    @property
    def is_parquet(self) -> bool:
        """Whether the file is Parquet (else CSV)."""
        return self.path.suffix == ".parquet"


@dataclass
class RawRows:
    """The rows of one file as text."""

    frame: pl.DataFrame  # contract columns (String), source_line (Int64), _malformed (Boolean)
    extra_columns: list[str]


def classify(path: Path) -> DeliveredFile | None:
    """The delivered file a path names; ``None`` for files that are not part of any delivery."""
    name = path.name
    if m := KELA_NAME.fullmatch(name):
        return DeliveredFile(path, "kela", m.group(1) + m.group(2), file_month=m.group(1) + m.group(2))
    if m := AVAIN_NAME.fullmatch(name):
        return DeliveredFile(path, "avain", f"{m.group(1)}_{m.group(2)}", file_kuntanumero=m.group(1),
                             file_year=int(m.group(2)))
    return None


def looks_like_delivery(path: Path) -> Extract | None:
    """The extract a badly named file was probably meant to be (for the ``file_name`` rule)."""
    if path.name.startswith("."):
        return None
    if KELA_LIKE.fullmatch(path.name):
        return "kela"
    if AVAIN_LIKE.fullmatch(path.name):
        return "avain"
    if path.suffix.lower() in (".csv", ".parquet"):
        return "kela"
    return None


def read_rows(f: DeliveredFile, data: bytes | None = None) -> RawRows:
    """The rows of a delivered file as text, or :class:`FileRuleBroken`; ``data`` is its bytes if already read."""
    if f.is_parquet:
        return _read_parquet(f, data)
    return _read_csv(f, f.path.read_bytes() if data is None else data)


# ----------------------------------------------------------------------------- CSV
def _decode(data: bytes) -> str:
    if not data or data.isspace():
        raise FileRuleBroken("file_empty", "the file is empty: expected a header row")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:2] == b"\x1f\x8b" or b"\x00" in data[:4096]:
        raise FileRuleBroken("file_encoding", "the file is not UTF-8 text (binary, compressed or UTF-16)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileRuleBroken("file_encoding", f"line {line}: bytes that are not UTF-8 (Latin-1?)") from None
    if text.startswith(BOM):
        text = text[1:]
    if not text or text.isspace():
        raise FileRuleBroken("file_empty", "the file has no header row")
    return text


def _header(line: str, columns: tuple[Column, ...]) -> list[str]:
    try:
        names = next(csv.reader([line], delimiter=SEPARATOR, quotechar='"'))
    except csv.Error as exc:
        raise FileRuleBroken("file_unreadable", f"the header row cannot be parsed as CSV ({exc})") from None
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise FileRuleBroken("header_duplicate_column", f"column {name!r} appears twice in the header")
        seen.add(name)
    missing = [c.name for c in columns if c.name not in seen]
    if missing:
        raise FileRuleBroken(
            "header_missing_column",
            f"header lacks {', '.join(missing)} (separator must be ';'; found {len(names)} column(s))",
        )
    return names


def _read_csv(f: DeliveredFile, data: bytes) -> RawRows:
    """The rows of a CSV file: by polars' reader where that is provably exact, else line by line.

    The body is read by polars' CSV reader with quoting off, and each row is
    checked against its line (see :func:`_read_bulk`); the few rows it cannot
    account for are parsed from their lines. A file with many quoted lines is
    parsed line by line: lines split and fields cut in bulk, a line with quotes
    parsed strictly (RFC 4180, whole fields).
    """
    text = _decode(data)
    del text  # decoded only to prove it is UTF-8: the rows are cut from the bytes
    columns = COLUMNS[f.extract]
    wanted = [c.name for c in columns]
    start = len(BOM_BYTES) if data.startswith(BOM_BYTES) else 0
    end = data.find(b"\n", start)
    header = _header(data[start: len(data) if end < 0 else end].decode("utf-8").removesuffix("\r"), columns)
    extra = [h for h in header if h not in wanted]
    bulk = None if end < 0 else _read_bulk(data[end + 1:], header, wanted)
    if bulk is not None:
        return RawRows(bulk, extra)
    lines = _lines(data)
    body = pl.DataFrame({"line": lines.slice(1), "source_line": pl.int_range(2, len(lines) + 1, eager=True)})
    return RawRows(_split_lines(body, header, wanted), extra)


def _split_lines(body: pl.DataFrame, header: list[str], wanted: list[str]) -> pl.DataFrame:
    """Rows of ``line`` and ``source_line``: lines without quotes cut at separators, the others parsed strictly."""
    quoted = body["line"].str.contains('"', literal=True)
    n_quoted = quoted.sum()
    if n_quoted == 0:
        return _split_plain(body, header, wanted)
    if n_quoted == body.height:
        return _split_quoted(body, header, wanted)
    return pl.concat([_split_plain(body.filter(~quoted), header, wanted),
                      _split_quoted(body.filter(quoted), header, wanted)]).sort("source_line")


BULK_EXCEPTIONS = 1000
"""Rows the bulk reader may leave to line-by-line parsing before the whole file is parsed line by line."""


def _read_bulk(body: bytes, header: list[str], wanted: list[str]) -> pl.DataFrame | None:
    """The rows of ``body`` read by polars' CSV reader with quoting off, or ``None`` where that does not pay.

    Every row must give back its line: its fields and separators must add up to
    the line's length (less the CR of a CRLF), and it must hold no quote. A row
    that fails (too few or too many fields, quotes) is parsed from its line like
    any other; the reader must keep one row per line, else nothing is taken from it.
    """
    n = len(header)
    bytes_ = np.frombuffer(body, dtype=np.uint8)
    ends = np.flatnonzero(bytes_ == ord("\n"))
    starts = np.concatenate(([0], ends + 1))
    if body and not body.endswith(b"\n"):
        ends = np.append(ends, len(body))
    else:
        starts = starts[:-1]
    if len(ends) == 0:
        return None
    quoted = _distinct_sorted(np.searchsorted(ends, np.flatnonzero(bytes_ == ord('"'))))
    if len(quoted) > BULK_EXCEPTIONS:
        return None
    names = [f"_f{i}" for i in range(n)]
    try:
        frame = pl.read_csv(body, has_header=False, separator=SEPARATOR, quote_char=None, comment_prefix=None,
                            schema=dict.fromkeys(names, pl.String), empty_string_is_null=False,
                            truncate_ragged_lines=True)
    except pl.exceptions.PolarsError:
        return None
    if frame.height != len(ends):
        return None
    length = ends - starts
    crlf = (length > 0) & (bytes_[np.maximum(ends - 1, 0)] == ord("\r"))
    used = pl.sum_horizontal(pl.col(c).str.len_bytes().cast(pl.Int64) for c in names) + (n - 1)
    suspect = frame.select((used != pl.Series(length - crlf)).alias("s"))["s"]
    if len(quoted):
        suspect = suspect.scatter(quoted, True)
    index = {h: i for i, h in enumerate(header)}
    out = frame.select(
        [pl.col(names[index[w]]).alias(w) for w in wanted]
        + [pl.int_range(2, len(ends) + 2, dtype=pl.Int64).alias("source_line"), pl.lit(False).alias("_malformed")])
    rows = suspect.arg_true().to_numpy()
    if len(rows) == 0:
        return out
    if len(rows) > BULK_EXCEPTIONS:
        return None
    lines = [body[starts[i]: ends[i]].decode("utf-8").removesuffix("\r") for i in rows]
    redone = _split_lines(pl.DataFrame({"line": lines, "source_line": rows.astype(np.int64) + 2}), header, wanted)
    at = pl.Series(rows.astype(np.int64))  # redone keeps the order of its lines: put each row back in place
    return out.with_columns(out[c].scatter(at, redone[c]) for c in [*wanted, "_malformed"])


def _distinct_sorted(values: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array (``np.unique`` without its sort or hash)."""
    if values.size == 0:
        return values
    return values[np.concatenate(([True], values[1:] != values[:-1]))]


def _lines(data: bytes) -> pl.Series:
    """The lines of UTF-8 bytes (BOM, line ends and the last line end dropped), without copying them in Python.

    Splits on LF and drops one CR before it, as ``str.split("\\n")`` and ``removesuffix("\\r")`` would.
    """
    start = len(BOM_BYTES) if data.startswith(BOM_BYTES) else 0
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    offsets = np.concatenate(([start], ends + 1))
    if offsets[-1] != len(data):
        offsets = np.append(offsets, len(data))
    strings = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets.astype(np.int64)),
                                               pa.py_buffer(data))
    return pl.Series("line", strings).str.strip_suffix("\n").str.strip_suffix("\r")


def _fields(frame: pl.DataFrame, field: Callable[[int], pl.Expr], malformed: pl.Expr, header: list[str],
            wanted: list[str]) -> pl.DataFrame:
    """The wanted fields, ``field(i)`` being the i-th of the header; a malformed row keeps no field."""
    out = frame.with_columns(malformed.alias("_malformed"))
    index = {h: i for i, h in enumerate(header)}
    picked = [field(index[w]) for w in wanted]
    if out["_malformed"].any():
        picked = [pl.when(~pl.col("_malformed")).then(p) for p in picked]
    return out.select([p.alias(w) for p, w in zip(picked, wanted, strict=True)] + ["source_line", "_malformed"])


def _split_plain(frame: pl.DataFrame, header: list[str], wanted: list[str]) -> pl.DataFrame:
    """Lines without quotes: fields are what lies between separators."""
    parts = frame.with_columns(pl.col("line").str.split(SEPARATOR).alias("_p"))
    return _fields(parts, lambda i: pl.col("_p").list.get(i, null_on_oob=True), pl.col("_p").list.len() != len(header),
                   header, wanted)


_FIELD = r'("(?:[^"]|"")*"|[^";]*)'
_SEP_QUOTED = f'"{SEPARATOR}"'


def _split_quoted(frame: pl.DataFrame, header: list[str], wanted: list[str]) -> pl.DataFrame:
    """Lines with quotes: each field bare (no quote in it) or quoted as a whole, ``""`` for a quote.

    Lines quoted field by field with no quote inside any field are cut like plain
    lines; the others are matched against the full grammar (no match: malformed).
    """
    n = len(header)
    line = pl.col("line")
    simple = (line.str.starts_with('"') & line.str.ends_with('"')
              & (line.str.count_matches('"', literal=True) == 2 * n)
              & (line.str.count_matches(_SEP_QUOTED, literal=True) == n - 1))
    is_simple = frame.select(simple.alias("s"))["s"]
    pieces = []
    if is_simple.any():
        parts = frame.filter(is_simple).with_columns(
            line.str.strip_prefix('"').str.strip_suffix('"').str.split(_SEP_QUOTED).alias("_p"))
        pieces.append(_fields(parts, lambda i: pl.col("_p").list.get(i), pl.lit(False), header, wanted))
    if not is_simple.all():
        parts = frame.filter(~is_simple).with_columns(
            line.str.extract_groups("^" + SEPARATOR.join([_FIELD] * n) + "$").alias("_p"))
        rest = _fields(parts, lambda i: pl.col("_p").struct[i], pl.col("_p").struct[0].is_null(), header, wanted)
        pieces.append(rest.with_columns(
            pl.when(pl.col(w).str.starts_with('"'))
            .then(pl.col(w).str.strip_prefix('"').str.strip_suffix('"').str.replace_all('""', '"', literal=True))
            .otherwise(pl.col(w)).alias(w)
            for w in wanted))
    return pieces[0] if len(pieces) == 1 else pl.concat(pieces).sort("source_line")


# ------------------------------------------------------------------------- Parquet
_PARQUET_TYPES = {
    "hetu": "text", "kotitalous_id": "text", "kuntanumero": "text", "tilastokuukausi": "text",
    "arviointipvm": "date_or_text", "tavoitealue": "text", "tilannetekijat": "text", "palvelut": "text",
    "menetelmat": "text",
}


def _read_parquet(f: DeliveredFile, data: bytes | None) -> RawRows:
    try:
        frame = pl.read_parquet(f.path if data is None else io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same rule
        raise FileRuleBroken("file_unreadable", f"not a readable Parquet file ({type(exc).__name__})") from None
    columns = COLUMNS[f.extract]
    missing = [c.name for c in columns if c.name not in frame.columns]
    if missing:
        raise FileRuleBroken("header_missing_column", f"Parquet file lacks {', '.join(missing)}")
    texts = []
    for col in columns:
        texts.append(_parquet_text(col, frame[col.name]))
    wanted = [c.name for c in columns]
    out = pl.DataFrame(texts).with_columns(
        pl.int_range(2, frame.height + 2, eager=True).alias("source_line"),
        pl.lit(False).alias("_malformed"),
    )
    return RawRows(out, [c for c in frame.columns if c not in wanted])


def _parquet_text(col: Column, s: pl.Series) -> pl.Series:
    dtype = s.dtype
    want = _PARQUET_TYPES.get(col.name, col.logical_type)
    ok = (
        (want == "text" and dtype == pl.String)
        or (want == "date_or_text" and dtype in (pl.String, pl.Date))
        or (want == "integer" and dtype.is_integer())
        or (want == "decimal" and (dtype.is_decimal() or dtype.is_integer() or dtype.is_float()))
    )
    if not ok:
        raise FileRuleBroken("parquet_column_type", f"Parquet column {col.name} is {dtype}: expected {want}")
    if dtype == pl.String:
        return s.fill_null("")
    if want == "decimal":
        if dtype.is_float():
            text = s.map_elements(lambda v: repr(v), return_dtype=pl.String)
        else:
            text = s.cast(pl.Decimal(38, 2)).cast(pl.String)
        return text.str.replace(".", ",", literal=True).fill_null("").alias(col.name)
    return s.cast(pl.String).fill_null("").alias(col.name)


__all__ = ["AVAIN_COLUMNS", "KELA_COLUMNS", "DeliveredFile", "FileRuleBroken", "RawRows", "classify", "read_rows"]
