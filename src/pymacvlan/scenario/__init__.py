"""Scenarios: the `pymacvlan replay` contract (docs/scenario-format.md)."""

from .compare import check_expectations, comparable, diff_results
from .schema import ScenarioError, load_scenario, validate

__all__ = ["ScenarioError", "load_scenario", "validate", "check_expectations", "comparable", "diff_results"]
