"""config - edgemail.toml -> frozen dataclasses.

Modules:
  loader   load(path, overrides) -> Config; every error as FILE:LINE: KEY: problem
           (ConfigErrors, exit 78)
  model    the frozen dataclasses (Config, Listener, Route, LinkConfig, ...) and
           the sets of allowed words
  values   the value syntax: durations, sizes, networks, domains, bounded ints
  dump     a Config as text (``edgemail config check`` prints it)
"""
