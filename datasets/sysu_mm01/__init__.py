"""SYSU-MM01 from the user's manual download (registers `sysu_mm01`)."""

from datasets.sysu_mm01.sysu_mm01 import SysuMm01  # noqa: F401
