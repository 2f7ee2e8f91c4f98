"""The pipeline's assets, one module per stage:
prompts → generations → reward_scores → preference_pairs → dpo_checkpoint → evaluation."""
