"""The whole post-training loop from one spec: data, experts, merge, evaluation, gates."""
