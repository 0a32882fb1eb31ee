"""The error every builder of this package raises for a bad manual download."""


class DatasetError(ValueError):
  """A missing, incomplete or corrupt dataset download; the message names
  the folder or file at fault and what to do."""
