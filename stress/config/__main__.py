"""``python -m stress.config``: print the config reference (every key, type, default and meaning)."""

from .reference import config_reference

print(config_reference(), end="")
