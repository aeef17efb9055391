"""Bradley–Terry reward models (Command A report, 3.2.3): soft-label loss, packed pairs,
two-stage training with ensemble relabelling, evaluation and batch scoring.

Modules: `config` (RMConfig), `data` (pairs, validation, hh-rlhf), `loss`, `packing`, `model`
(RewardModel), `train` (two stages, registration), `eval` (accuracy, calibration), `score`
(RewardScorer). Importing this package loads no torch; the modules that need it import it.
"""
