"""Counting score evaluations and watching for non-finite values without host syncs."""

from __future__ import annotations

from ..core.evaluator import Evaluator as ScoreEvaluator

__all__ = ["ScoreEvaluator"]
