"""Bad input: one error type that names the file and the problem, and a report of what was skipped.

Datasets in the wild have broken files. A loader records each problem in a ``SkipReport`` and
goes on with the rest, so one broken image never kills a sweep; with ``strict=True`` the first
problem raises instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from facslab.errors import UsersMistake

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class BadInputError(UsersMistake, ValueError):
    """A file that cannot be used, and why."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


class MissingInputError(BadInputError, FileNotFoundError):
    """A file or folder a dataset needs is not there."""


#: a spreadsheet's "UTF-8 with BOM" save starts the file with U+FEFF: read as if it were not there
TEXT_ENCODING = "utf-8-sig"


def read_text(path: str | Path) -> str:
    """A text file's contents, a byte-order mark dropped; undecodable bytes are a BadInputError."""
    try:
        return Path(path).read_text(encoding=TEXT_ENCODING)
    except UnicodeDecodeError as error:
        raise BadInputError(path, f"not UTF-8 text (byte {error.start})") from None


def read_csv(path: str | Path, **options) -> pd.DataFrame:
    """``pandas.read_csv`` that names the file: an empty file or an unparsable one is a BadInputError."""
    import pandas as pd  # here, not at the top: every CLI command imports this module (0.4 s of start-up)

    try:
        return pd.read_csv(path, encoding=TEXT_ENCODING, **options)
    except pd.errors.EmptyDataError:
        raise BadInputError(path, "empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise BadInputError(path, f"not a readable CSV ({str(error).strip().splitlines()[-1]})") from None


@dataclass
class SkipReport:
    """Which files were skipped and why; ``strict`` turns the first skip into an error."""

    strict: bool = False
    rows: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, path: str | Path, problem: str) -> None:
        if self.strict:
            raise BadInputError(path, problem)
        log.debug("skipped %s: %s", path, problem)
        self.rows.append((str(path), problem))

    def add(self, error: BadInputError) -> None:
        self.skip(error.path, error.problem)

    def extend(self, other: SkipReport) -> None:
        for path, problem in other.rows:
            self.skip(path, problem)

    def __len__(self) -> int:
        return len(self.rows)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["file", "problem"])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(path, index=False)
        return path

    def summary(self) -> str:
        if not self.rows:
            return "no files skipped"
        counts = self.to_frame()["problem"].str.split(":").str[0].value_counts()
        return f"{len(self.rows)} skipped: " + ", ".join(f"{n} {why}" for why, n in counts.items())
