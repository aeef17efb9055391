"""Evaluation harness: suites that score a model on the fixed evaluation sets (eval_sets)."""
