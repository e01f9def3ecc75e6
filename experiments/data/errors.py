"""The one exception every data loader raises for problems a user can fix (missing, empty, bad files)."""


class DataError(ValueError):
  """A data set is missing, empty, truncated or malformed; the message says what to do, in one line."""
