"""Model merging: linear soups streamed from safetensors, weight schemes on top, and weight search.

    from trainer.merging import merge_linear, load_merge_config, run_merge

    merge_linear([expert_a, expert_b], [0.7, 0.3], out_dir)          # a plain folder
    run_merge(load_merge_config("soup.yaml"), store)                  # into the model store

Public API:
    MergeConfig, SearchConfig, load_merge_config, load_search_config, MergeError
    plan_linear, execute_linear, merge_linear (linear.py)
    seed_merge, leave_one_out_merges, interpolate, run_merge, merge_linear_to_store (schemes.py)
    search_weights, run_search (search.py)
    Checkpoint, ShardedWriter, SafetensorsWriter (safetensors_io.py)
"""

from trainer.merging.config import (
    MergeConfig,
    MergeError,
    ModelWeight,
    SearchConfig,
    load_merge_config,
    load_search_config,
)
from trainer.merging.linear import LinearMergePlan, MergeResult, execute_linear, merge_linear, plan_linear
from trainer.merging.safetensors_io import Checkpoint, SafetensorsWriter, ShardedWriter, TensorSpec
from trainer.merging.schemes import (
    RegisteredMerge,
    interpolate,
    leave_one_out_merges,
    leave_one_out_weights,
    merge_linear_to_store,
    run_merge,
    seed_merge,
)
from trainer.merging.search import Candidate, SearchResult, run_search, search_weights

__all__ = [
    "Candidate",
    "Checkpoint",
    "LinearMergePlan",
    "MergeConfig",
    "MergeError",
    "MergeResult",
    "ModelWeight",
    "RegisteredMerge",
    "SafetensorsWriter",
    "SearchConfig",
    "SearchResult",
    "ShardedWriter",
    "TensorSpec",
    "execute_linear",
    "interpolate",
    "leave_one_out_merges",
    "leave_one_out_weights",
    "load_merge_config",
    "load_search_config",
    "merge_linear",
    "merge_linear_to_store",
    "plan_linear",
    "run_merge",
    "run_search",
    "search_weights",
    "seed_merge",
]
