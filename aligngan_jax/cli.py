"""What every command-line program of the project shares (main.py, search,
export, tools/, bench/): absl's ``app.run``, with ``--help`` exiting 0.

absl prints the help of ``--help`` (``-h``, ``--helpshort``,
``--helpfull``, ``--helpxml``) and then exits with status 1, which scripts
and CI read as a failure; asking for help is not an error.
"""

import sys

from absl import app

_HELP = ('--help', '-h', '-?', '--helpshort', '--helpfull', '--helpxml')


def asked_for_help(argv) -> bool:
  return any(arg.split('=')[0] in _HELP for arg in argv[1:])


def run(main, **kwargs) -> None:
  """``app.run(main, **kwargs)``; exits 0 after printing a requested help."""
  try:
    app.run(main, **kwargs)
  except SystemExit as e:
    if e.code == 1 and asked_for_help(sys.argv):
      sys.exit(0)
    raise
