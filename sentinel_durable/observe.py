"""The import path of 0.1 for ``sentinel_durable.integrations.observe`` and ``.usage`` (kept working)."""

from .integrations.observe import Observation, current_observation
from .integrations.usage import Usage, usage_from_anthropic, usage_from_openai

__all__ = ["Observation", "Usage", "current_observation", "usage_from_anthropic", "usage_from_openai"]
