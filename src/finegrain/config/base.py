"""What every config section shares: `_Section` (unknown keys and wrong types are errors) and `ConfigError`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the offending key."""


class _Section(BaseModel):
    # extra="forbid" is what turns a misspelt key into an error instead of a silently ignored setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
