"""Model resources: the policy that samples answers and the reward scorer that ranks them.

They only hold configuration; a model is loaded when a step opens it (``with policy.open() as gen``)
and released when the step is done, so no step keeps a GPU or a vLLM engine alive after it finishes.

The one exception is ``keep_loaded``: every step of one process then shares one policy engine (see
``croco_pipeline.core.models.lifetime``).
"""

from __future__ import annotations

from dagster import ConfigurableResource

from croco_pipeline.core.models.generators import Generator
from croco_pipeline.core.models.lifetime import open_policy_generator
from croco_pipeline.core.models.reward_scorers import RewardScorer, open_scorer
from croco_pipeline.core.models.specs import resolve_model
from croco_pipeline.core.settings import PolicySettings, RewardSettings


class PolicyResource(ConfigurableResource, PolicySettings):
    """A generating model (``core.settings.PolicySettings``): the policy, the judge or the translator."""

    def model_path(self) -> str:
        return resolve_model(self.model)

    def open(self, *, enable_lora: bool = False, seed: int = 0) -> Generator:
        return open_policy_generator(**self.generator_options(seed=seed, enable_lora=enable_lora))


class RewardResource(ConfigurableResource, RewardSettings):
    """The reward scorer (``core.settings.RewardSettings``)."""

    def open(self) -> RewardScorer:
        return open_scorer(**self.scorer_options())
