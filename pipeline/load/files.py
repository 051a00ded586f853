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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from schemas.columns import AVAIN_COLUMNS, COLUMNS, KELA_COLUMNS, Column

Extract = Literal["kela", "avain"]

KELA_NAME = re.compile(r"toimeentulotuki_(\d{4})(0[1-9]|1[0-2])\.(csv|parquet)")
AVAIN_NAME = re.compile(r"avain_(\d{3})_(\d{4})\.(csv|parquet)")
KELA_LIKE = re.compile(r"toimeentulotuki_.*", re.IGNORECASE)
AVAIN_LIKE = re.compile(r"avain_.*", re.IGNORECASE)
SEPARATOR = ";"
BOM = "\ufeff"


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


def read_rows(f: DeliveredFile) -> RawRows:
    """The rows of a delivered file as text, or :class:`FileRuleBroken`."""
    return _read_parquet(f) if f.is_parquet else _read_csv(f)


# ----------------------------------------------------------------------------- CSV
def _decode(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
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
    if not text.strip():
        raise FileRuleBroken("file_empty", "the file has no header row")
    return text


def _header(line: str, columns: tuple[Column, ...]) -> list[str]:
    names = next(csv.reader([line], delimiter=SEPARATOR, quotechar='"'))
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


def _read_csv(f: DeliveredFile) -> RawRows:
    text = _decode(f.path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    columns = COLUMNS[f.extract]
    header = _header(lines[0], columns)
    body = pl.Series("line", lines[1:], dtype=pl.String)
    n = len(header)
    frame = pl.DataFrame({"line": body, "source_line": pl.int_range(2, len(lines) + 1, eager=True)})
    has_quote = frame["line"].str.contains('"', literal=True)
    plain = frame.filter(~has_quote)
    split = plain.with_columns(pl.col("line").str.split(SEPARATOR).alias("_f"))
    split = split.with_columns((pl.col("_f").list.len() != n).alias("_malformed"))
    out = split.select(
        [pl.when(~pl.col("_malformed")).then(pl.col("_f").list.get(i, null_on_oob=True)).otherwise(None).alias(h)
         for i, h in enumerate(header)]
        + ["source_line", "_malformed", pl.col("line").alias("_raw")]
    )
    quoted = frame.filter(has_quote)
    if quoted.height:
        out = pl.concat([out, _parse_quoted(quoted, header)], how="vertical_relaxed").sort("source_line")
    wanted = [c.name for c in columns]
    extra = [h for h in header if h not in wanted]
    return RawRows(out.select(wanted + ["source_line", "_malformed", "_raw"]), extra)


def _parse_quoted(frame: pl.DataFrame, header: list[str]) -> pl.DataFrame:
    """Rows with quotes, parsed strictly one line at a time (a stray quote makes the row malformed)."""
    records: dict[str, list] = {h: [] for h in header}
    malformed: list[bool] = []
    for line in frame["line"]:
        try:
            fields = next(csv.reader([line], delimiter=SEPARATOR, quotechar='"', strict=True))
            ok = len(fields) == len(header) and _quotes_clean(line, fields)
        except csv.Error:
            fields, ok = [], False
        malformed.append(not ok)
        for i, h in enumerate(header):
            records[h].append(fields[i] if ok else None)
    return pl.DataFrame(
        {**{h: pl.Series(h, v, dtype=pl.String) for h, v in records.items()},
         "source_line": frame["source_line"], "_malformed": malformed, "_raw": frame["line"]}
    )


def _quotes_clean(line: str, fields: list[str]) -> bool:
    """A quoted field must be quoted as a whole (``"a"x`` is malformed, as RFC 4180 has it)."""
    pos = 0
    for i, v in enumerate(fields):
        bare, quoted = v, f'"{v.replace(chr(34), chr(34) * 2)}"'
        sep = SEPARATOR if i < len(fields) - 1 else ""
        if line.startswith(quoted + sep, pos):
            pos += len(quoted) + len(sep)
        elif '"' not in bare and line.startswith(bare + sep, pos):
            pos += len(bare) + len(sep)
        else:
            return False
    return pos == len(line)


# ------------------------------------------------------------------------- Parquet
_PARQUET_TYPES = {
    "hetu": "text", "kotitalous_id": "text", "kuntanumero": "text", "tilastokuukausi": "text",
    "arviointipvm": "date_or_text", "tavoitealue": "text", "tilannetekijat": "text", "palvelut": "text",
    "menetelmat": "text",
}


def _read_parquet(f: DeliveredFile) -> RawRows:
    try:
        frame = pl.read_parquet(f.path)
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
    out = out.with_columns(pl.concat_str([pl.col(c).fill_null("") for c in wanted], separator=SEPARATOR).alias("_raw"))
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
