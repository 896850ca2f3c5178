"""Where the persistent compilation cache goes: one rule for the library and
the CLI (``optax_clr._cache.default_cache_dir``)."""

import os

from optax_clr import _cache


def test_the_cache_goes_under_xdg_cache_home_when_it_is_set(monkeypatch):
  monkeypatch.delenv("OPTAX_CLR_CACHE_DIR", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", "/data/cache")
  assert _cache.default_cache_dir() == "/data/cache/optax-clr/xla"


def test_the_cache_goes_under_home_dot_cache_without_xdg(monkeypatch):
  monkeypatch.delenv("OPTAX_CLR_CACHE_DIR", raising=False)
  monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
  monkeypatch.setenv("HOME", "/home/someone")
  assert _cache.default_cache_dir() == "/home/someone/.cache/optax-clr/xla"


def test_optax_clr_cache_dir_wins_over_xdg(monkeypatch):
  monkeypatch.setenv("OPTAX_CLR_CACHE_DIR", "/scratch/clr")
  monkeypatch.setenv("XDG_CACHE_HOME", "/data/cache")
  assert _cache.default_cache_dir() == os.path.join("/scratch/clr", "xla")


def test_an_empty_optax_clr_cache_dir_turns_the_cache_off(monkeypatch):
  monkeypatch.setenv("OPTAX_CLR_CACHE_DIR", "")
  assert _cache.default_cache_dir() is None
  assert _cache.enable_compilation_cache() is None
