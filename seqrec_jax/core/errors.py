"""The project's own error type for bad input.

Every problem with a user-supplied file (malformed line, missing column, text in a numeric field,
empty file, bad encoding, unknown item, missing download) is raised as a `DataError`, whose
string form is a single line `FILE:LINE: message` so that a command-line entry point can print
it as is and exit non-zero.
"""

from __future__ import annotations

import os
import re


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


class ConfigError(ValueError):
  """A setting that cannot work with this data or machine (e.g. a batch larger than the data).

  `str(e)` is `"message (--config.FIELD): hint"`, one line; `field` is the dotted config field.
  """

  def __init__(self, message: str, *, field: str, hint: str = "change it"):
    self.message = " ".join(str(message).split("\n"))
    self.field, self.hint = field, hint
    super().__init__(f"{self.message} (--config.{field}): {hint}")

  def __reduce__(self):
    return (_rebuild_config_error, (self.message, self.field, self.hint))


def _rebuild_config_error(message, field, hint):
  return ConfigError(message, field=field, hint=hint)


# What to do about an OSError, by errno name (the file is named beside it).
_OS_ADVICE = {
    "ENOSPC": "free space on that disk, or use a --workdir on another one (finished stages are "
              "kept and skipped when rerun)",
    "EDQUOT": "free space within your disk quota, or use a --workdir on another disk",
    "EACCES": "make it writable, or use another --workdir",
    "EPERM": "make it writable, or use another --workdir",
    "EROFS": "the file system is read-only: use a --workdir on a writable one",
    "ENOTDIR": "a part of the path is a file, not a folder: give --workdir a folder",
    "EEXIST": "a file is in the way of a folder: give --workdir a folder (or remove the file)",
    "EISDIR": "a folder is where a file is expected: remove it, or use another --workdir",
}


def chain(error: BaseException):
  """`error`, then the exceptions it was raised from or while handling, outermost first."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def _one_line(text) -> str:
  return " ".join(str(text).split())


def frames(error: BaseException):
  """The traceback frames of `error`, innermost first."""
  frames, tb = [], error.__traceback__
  while tb is not None:
    frames.append(tb)
    tb = tb.tb_next
  return reversed(frames)


def _path_in_frames(error: BaseException) -> str | None:
  """The file being read or written when `error` was raised: the `path` argument of the
  innermost frame that has one (`files.read_json`, `files.write_atomic`, ...)."""
  for tb in frames(error):
    path = tb.tb_frame.f_locals.get("path")
    if isinstance(path, (str, os.PathLike)):
      return os.fspath(path)
  return None


def _where(error: BaseException) -> str:
  """`FILE:LINE` of the innermost frame in the project's own code (else the innermost one)."""
  stack = list(frames(error))
  for tb in stack:
    name = tb.tb_frame.f_code.co_filename
    if "site-packages" not in name and any(f"{os.sep}{package}{os.sep}" in name
                                           for package in ("seqrec_jax", "experiments")):
      break
  else:
    if not stack:
      return "unknown"
    tb = stack[0]
  return f"{os.path.relpath(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"


def describe(error: BaseException) -> str:
  """The one line `error: WHAT (FILE): WHAT TO DO` that a command line prints for `error`.

  Errors that already say what is wrong and where (`DataError`, `ConfigError`) print as they are;
  file-system errors (a full disk, a read-only or misnamed workdir) and unreadable JSON files are
  recognised anywhere in the exception chain; anything else names its type, message and the
  project line that raised it.
  """
  import json  # pylint: disable=g-import-not-at-top

  if isinstance(error, KeyboardInterrupt):
    return ("error: interrupted: rerun the same command to resume (finished stages are skipped, "
            "training resumes from its last checkpoint)")
  if isinstance(error, (DataError, ConfigError)):
    return f"error: {error}"
  for e in chain(error):
    if isinstance(e, json.JSONDecodeError):
      file = _path_in_frames(e) or "a JSON file of the workdir"
      return (f"error: not valid JSON, perhaps cut short ({file}, line {e.lineno} column "
              f"{e.colno}): delete it and rerun with --config.overwrite=true to redo the stage "
              f"that writes it")
    if isinstance(e, OSError) and e.errno is not None:
      import errno as errno_lib  # pylint: disable=g-import-not-at-top

      name = errno_lib.errorcode.get(e.errno, "")
      file = e.filename if e.filename is not None else (_path_in_frames(e) or _where(e))
      what = _one_line(e.strerror or e)
      if name in _OS_ADVICE:
        return f"error: {what} ({file}): {_OS_ADVICE[name]}"
      return f"error: {what} ({file}): check the path and the disk"
    if "No space left on device" in str(e):  # e.g. tensorstore (orbax) errors keep no errno
      quoted = re.search(r'"(/[^"]+)"', str(e))
      file = quoted.group(1) if quoted else _where(e)
      return f"error: No space left on device ({file}): {_OS_ADVICE['ENOSPC']}"
  message = _one_line(error) or "(no message)"
  return (f"error: {type(error).__name__}: {message} ({_where(error)}): check the settings it "
          f"names; SEQREC_TRACEBACK=1 or --verbosity=1 shows the traceback")
