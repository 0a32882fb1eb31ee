"""The one base class of the errors a user can fix.

Every fault in the user's input (a config value, a path, a dataset folder, a
checkpoint, weights, a diverged run) raises a `UserError` whose message
names the key or file at fault and what to do, in one line. main.py,
``search`` and ``export`` catch `UserError` (and `NotImplementedError`)
and print that line; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
  """A fault of the user's input; the message says which and what to do."""


class ConfigError(UserError, ValueError):
  """An invalid config value or path; the message names the key or path."""
