"""The project's own error type for bad input.

Every problem with a user-supplied file (malformed line, missing column, text in a numeric field,
empty file, bad encoding, unknown item, missing download) is raised as a `DataError`, whose
string form is a single line `FILE:LINE: message` so that a command-line entry point can print
it as is and exit non-zero.
"""

from __future__ import annotations

import os


class DataError(ValueError):
  """Bad input data: says which file, which 1-based line, what was expected and what was found.

  `str(e)` is `"FILE:LINE: message"`; the parts that are None are left out (`"FILE: message"`,
  `"message"`). Newlines in the message are flattened so the error always prints on one line.
  """

  def __init__(self, message: str, *, file: str | os.PathLike | None = None,
               line: int | None = None):
    self.message = " ".join(str(message).split("\n"))
    self.file = None if file is None else os.fspath(file)
    self.line = None if line is None else int(line)
    super().__init__(self._format())

  def _format(self) -> str:
    prefix = ""
    if self.file is not None:
      prefix = self.file
      if self.line is not None:
        prefix += f":{self.line}"
      prefix += ": "
    elif self.line is not None:
      prefix = f"line {self.line}: "
    return prefix + self.message

  def __str__(self) -> str:
    return self._format()

  def __reduce__(self):
    # Keeps the keyword-only arguments when the error crosses a process boundary.
    return (_rebuild_data_error, (self.message, self.file, self.line))


def _rebuild_data_error(message, file, line):
  return DataError(message, file=file, line=line)
