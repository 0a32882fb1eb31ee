"""RegDB from the user's manual download (registers `regdb/trial1..10`)."""

from datasets.regdb.regdb import Regdb  # noqa: F401
