"""Reading documents: CSV, .txt, http(s) download (a local server), built-in corpus, bad input."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from data_factories import make_config, write_csv
from data_pipeline.corpus import load_corpus
from data_pipeline.errors import ConfigError, DataError
from data_pipeline.sources import FORTUNE_FILES, read_documents, read_fortunes


def test_csv_with_bom_quotes_and_empty_rows(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    path.write_bytes(
        "\ufeffpublish_date,headline_text\n"
        '20030219,"council, mayor agree"\n'
        "20030219,\n"  # empty field: NaN
        '20030220,"   "\n'  # whitespace only
        '20030221,"he said ""no"" to plans"\n'
        '20030222,"line one\nline two"\n'
        "20030223,NA\n".encode("utf-8"))
    raw = read_documents(make_config(tmp_path, data_file=str(path)))
    assert raw.texts == ["council, mayor agree", 'he said "no" to plans', "line one\nline two",
                         "NA"]
    assert (raw.rows_read, raw.empty_rows_dropped) == (6, 2)


def test_txt_one_document_per_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    path.write_bytes(b"first doc\r\n\n  \nsecond \xc3\xa9 doc\nthird\n")
    raw = read_documents(make_config(tmp_path, data_file=str(path)))
    assert raw.texts == ["first doc", "second \u00e9 doc", "third"]
    assert (raw.rows_read, raw.empty_rows_dropped) == (5, 2)


def test_other_encoding_when_configured(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not valid utf-8.*encoding"):
        read_documents(make_config(tmp_path, data_file=str(path)))
    raw = read_documents(make_config(tmp_path, data_file=str(path), encoding="latin-1"))
    assert raw.texts == ["caf\u00e9 au lait"]


def test_builtin_fortunes_corpus() -> None:
    raw = read_fortunes()
    assert 13_000 < len(raw.texts) < 15_000
    assert not any(line == "%" for text in raw.texts for line in text.splitlines())
    assert not any("$FreeBSD$" in text for text in raw.texts)
    assert any("\n" in text for text in raw.texts)  # multi-line fortunes stay whole
    # Each text's `category` is the file it comes from, in FORTUNE_FILES order.
    categories = [category for (category,) in raw.conditions]
    assert len(categories) == len(raw.texts)
    assert list(dict.fromkeys(categories)) == list(FORTUNE_FILES)
    assert categories.count("fortunes") > 10 * categories.count("zippy") > 0
    # The potentially offensive files are other files of the same package, and they are not read.
    folder = Path(raw.source.split("(", 1)[1].rstrip(")"))
    for name in ("fortunes-o", "murphy-o", "limerick"):
        offensive = folder / name
        if offensive.is_file():
            first = offensive.read_text(encoding="utf-8", errors="replace").split("\n%\n")[1].strip()
            assert first not in {text.strip() for text in raw.texts}


class _RecordingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args: object) -> None:  # keep test output quiet, count requests
        _RecordingHandler.requests.append(self.path)


@pytest.fixture()
def http_root(tmp_path: Path):
    """A static file server on 127.0.0.1 serving tmp_path/www; yields (root dir, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    _RecordingHandler.requests = []
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_RecordingHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_url_downloaded_once_into_cache(tmp_path: Path, http_root) -> None:
    root, base = http_root
    content = b"headline_text\nfirst headline\nsecond headline\n"
    (root / "news.csv").write_bytes(content)
    config = make_config(tmp_path, data_file=f"{base}/news.csv",
                         url_sha256=hashlib.sha256(content).hexdigest())
    assert read_documents(config).texts == ["first headline", "second headline"]
    assert read_documents(config).texts == ["first headline", "second headline"]
    assert len([p for p in _RecordingHandler.requests if p == "/news.csv"]) == 1  # cached
    assert len(list((tmp_path / "downloads").glob("*news.csv"))) == 1


def test_url_checksum_mismatch(tmp_path: Path, http_root) -> None:
    root, base = http_root
    (root / "docs.txt").write_text("one\ntwo\n")
    with pytest.raises(DataError, match="url_sha256"):
        read_documents(make_config(tmp_path, data_file=f"{base}/docs.txt", url_sha256="0" * 64))


def test_url_404_names_the_url(tmp_path: Path, http_root) -> None:
    _, base = http_root
    url = f"{base}/missing.csv"
    with pytest.raises(DataError, match=f"{url}.*could not be downloaded.*404"):
        read_documents(make_config(tmp_path, data_file=url))


@pytest.mark.parametrize("name, content, message", [
    ("missing.csv", None, "does not exist"),
    ("folder.csv", "dir", "is a directory"),
    ("empty.csv", b"", r"is empty \(0 bytes\)"),
    ("empty.txt", b"\n \n\n", "only empty lines"),
    ("notes.json", b"{}", "suffix '.json'"),
    ("bad.csv", b"headline_text\nok\ncaf\xe9\n",
     r"not valid utf-8 \(byte 0xe9.*CONFIG\['encoding'\]"),
    ("header_only.csv", b"headline_text\n", "holds no text"),
])
def test_bad_files_fail_with_one_line(tmp_path: Path, name: str, content, message: str) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        read_documents(make_config(tmp_path, data_file=str(path)))
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_csv_without_text_column_lists_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", [["a", "b"]], header=["title", "body"])
    with pytest.raises(DataError, match=r"text_column='headline_text'.*\['title', 'body'\]"):
        read_documents(make_config(tmp_path, data_file=str(path)))


def test_all_empty_text_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", [["1", ""], ["2", "  "]], header=["id", "headline_text"])
    with pytest.raises(DataError, match="holds no text"):
        read_documents(make_config(tmp_path, data_file=str(path)))


def test_chronological_needs_a_date_column(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "x.csv", [["a"]], header=["headline_text"])
    with pytest.raises(DataError, match=r"date_column='publish_date'.*\['headline_text'\]"):
        read_documents(make_config(tmp_path, data_file=str(csv_path), split="chronological"))
    txt_path = tmp_path / "x.txt"
    txt_path.write_text("a\nb\n")
    with pytest.raises(DataError, match="needs a date column"):
        read_documents(make_config(tmp_path, data_file=str(txt_path), split="chronological"))
    bad_dates = write_csv(tmp_path / "d.csv", [["2003", "a"], ["soon", "b"]],
                          header=["publish_date", "headline_text"])
    with pytest.raises(DataError, match="not dates.*'soon'"):
        read_documents(make_config(tmp_path, data_file=str(bad_dates), split="chronological"))


def test_config_rejects_short_max_len_and_small_bpe_vocab(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_len"):
        make_config(tmp_path, max_len=1)
    with pytest.raises(ConfigError, match="vocab_size"):
        make_config(tmp_path, vocab_size=100, tokenizer="bpe")


def test_too_few_documents_for_the_split(tmp_path: Path) -> None:
    path = tmp_path / "two.txt"
    path.write_text("only one\nand two\n")
    with pytest.raises(DataError, match=r"only 2 documents.*split_fractions"):
        load_corpus(make_config(tmp_path, data_file=str(path)))
