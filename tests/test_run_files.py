"""The tests' own settings (tests/run_files.py)."""

import pytest

import run_files


def test_xla_flags_skipped_on_another_jaxlib_are_not_silent(monkeypatch):
  monkeypatch.setattr(run_files, '_FASTER_COMPILES', {'--xla_made_up=1': ('0.0',)})
  with pytest.warns(UserWarning, match=r"not a series the XLA flags \['--xla_made_up=1'\]"):
    flags = run_files.xla_flags_for_tests()
  assert flags == ['--xla_force_host_platform_device_count=2']
  monkeypatch.setattr(run_files, '_FASTER_COMPILES', {})
  assert run_files.xla_flags_for_tests() == ['--xla_force_host_platform_device_count=2']
