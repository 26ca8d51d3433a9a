"""Raw data files: where they live, how they open, and how a bad line is reported.

Every reader reports a malformed line as DataFormatError("<file>, line <n>: ..."),
with line numbers starting at 1 and counting the header, so the line can be found
with any editor or `sed -n <n>p <file>`.
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import IO, Iterator


class DataFormatError(ValueError):
    """A raw data file has a line that does not match its documented format."""


def line_error(path, line_number: int, problem: str) -> DataFormatError:
    """Build the error for a malformed line: file, 1-based line number, what is wrong."""
    return DataFormatError(f"{path}, line {line_number}: {problem}")


def data_home(data_home=None) -> Path:
    """Folder for downloaded data: the argument, else $TINYDIN_DATA_HOME, else ~/.cache/tinydin."""
    if data_home is not None:
        return Path(data_home).expanduser()
    from_env = os.environ.get("TINYDIN_DATA_HOME")
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "tinydin"


def open_text(path, encoding: str = "utf-8") -> IO[str]:
    """Open a plain or gzip-compressed text file (chosen by the .gz suffix) for reading."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return open(path, "r", encoding=encoding, newline="")


def numbered_lines(path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield (line number from 1, line without its line ending) for a plain or .gz file.

    A file that is not valid in `encoding`, or a truncated gzip stream, is reported
    as DataFormatError with the line where reading stopped.
    """
    number = 0
    try:
        with open_text(path, encoding) as handle:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise line_error(path, number + 1, f"not valid {encoding} text ({error.reason})") from error
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise line_error(path, number + 1, f"the file is truncated or not gzip ({error})") from error


def find_file(folder: Path, names: list[str]) -> Path | None:
    """Return the first of `names` that exists in folder, or None."""
    for name in names:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None
