"""Realistic synthetic shop data for the landing zone (see docs/generator.md and docs/landing_contract.md).

Use `generate(...)` from Python or `c360 generate` on the command line.
"""

from c360dev.generate.core import DEFAULT_START, GenerateSummary, generate
from c360dev.generate.dirt import DIRT_KINDS, DirtConfig
from c360dev.generate.model import ModelParams

__all__ = ["DEFAULT_START", "DIRT_KINDS", "DirtConfig", "GenerateSummary", "ModelParams", "generate"]
