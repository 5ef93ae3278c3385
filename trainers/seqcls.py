"""The class a causal reward model is saved as: transformers' ``<Arch>ForSequenceClassification``.

Many causal LMs in transformers have no such class (Granite, Cohere, Gemma 4, the Mellum and
IQuest code models, Mamba, ...), and a few have one with another head (CTRL's ``classifier``,
which would drop the saved ``score`` and start at random). For those,
:func:`sequence_classification_class` writes one from transformers' own
``GenericForSequenceClassification`` (the class most architectures' versions are made of:
``AutoModel`` backbone, bias-free ``score`` head, the last non-pad token's logit) on top of the
architecture's ``PreTrainedModel``. The same source is used here in-process and saved
beside the weights as :data:`REWARD_CODE_FILE`, with an ``auto_map`` in the config, so the
checkpoint loads elsewhere with
``AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

REWARD_CODE_FILE = "modeling_codeprefs_reward.py"

_SOURCE = '''"""The reward-model class for {model_type}, written by codeprefs from transformers'
GenericForSequenceClassification: transformers has no sequence-classification class for this
architecture, or one whose head is not a bias-free linear `score`."""

from transformers.modeling_layers import GenericForSequenceClassification
from {config_module} import {config}
from {module} import {pretrained}


class {name}(GenericForSequenceClassification, {pretrained}):
    config_class = {config}  # the causal LM's (a text model's, where its PreTrainedModel is multimodal)
    base_model_prefix = "{prefix}"

    @classmethod
    def _can_set_experts_implementation(cls) -> bool:
        # transformers decides this by reading the class's own module; the answer is the architecture's
        return {pretrained}._can_set_experts_implementation()

    @classmethod
    def is_custom_code(cls) -> bool:
        # Made of transformers' own modules and initialisation: loading must initialise what the
        # checkpoint lacks (non-persistent buffers such as Falcon-H1's mup_vector) as for them.
        return False
'''


@dataclass(frozen=True)
class RewardClass:
    """The class to save and load as, and the module source to save with it (None: in transformers)."""

    cls: type
    source: str | None = None

    @property
    def auto_map(self) -> dict[str, str] | None:
        if self.source is None:
            return None
        return {"AutoModelForSequenceClassification": f"{REWARD_CODE_FILE.removesuffix('.py')}.{self.cls.__name__}"}


def sequence_classification_class(config: Any) -> RewardClass:
    """transformers' class for ``config.model_type`` if its head is ours (a bias-free linear
    ``score`` beside the base model), else one written for it (see module doc)."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    name = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.get(config.model_type)
    if name is not None and hasattr(transformers, name) and _has_our_head(getattr(transformers, name), config):
        return RewardClass(getattr(transformers, name))
    return _written_class(config.model_type)


_HEADS: dict[type, bool] = {}


def _has_our_head(cls: type, config: Any) -> bool:
    """Whether ``cls`` scores with a bias-free linear ``score`` (CTRL's has a ``classifier``: the
    saved ``score.weight`` would be dropped and the head initialised at random on loading)."""
    import copy

    import torch
    from transformers.modeling_layers import GenericForSequenceClassification

    if issubclass(cls, GenericForSequenceClassification):
        return True
    if cls not in _HEADS:
        config = copy.deepcopy(config)
        config.num_labels = 1
        try:
            with torch.device("meta"):  # modules only, no memory
                instance = cls(config)
        except (ValueError, TypeError, AttributeError, RuntimeError):
            _HEADS[cls] = False
        else:
            score = getattr(instance, "score", None)
            _HEADS[cls] = (isinstance(score, torch.nn.Linear) and score.bias is None
                           and hasattr(instance, cls.base_model_prefix))
    return _HEADS[cls]


@functools.cache
def _written_class(model_type: str) -> RewardClass:
    import transformers
    from transformers import PreTrainedModel
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_MAPPING_NAMES

    causal = getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type, ""), None)
    if causal is None or model_type not in MODEL_MAPPING_NAMES:
        raise ValueError(f"transformers has neither a sequence-classification class nor a causal LM and base "
                         f"model for model type {model_type!r}, so no reward model can be saved loadably")
    pretrained = next((base for base in causal.__mro__[1:] if isinstance(base, type)
                       and issubclass(base, PreTrainedModel) and base is not PreTrainedModel), None)
    if pretrained is None:
        raise ValueError(f"{causal.__name__} has no PreTrainedModel base to build a reward-model class on")
    stem = (pretrained.__name__.removesuffix("PreTrainedModel") if pretrained.__name__.endswith("PreTrainedModel")
            else causal.__name__.removesuffix("ForCausalLM"))
    class_name = stem + "ForSequenceClassification"
    config = causal.config_class
    source = _SOURCE.format(model_type=model_type, module=pretrained.__module__, pretrained=pretrained.__name__,
                            config_module=config.__module__, config=config.__name__, name=class_name,
                            prefix=pretrained.base_model_prefix)
    namespace: dict[str, Any] = {"__name__": f"codeprefs_reward_{model_type}"}
    exec(compile(source, f"<{REWARD_CODE_FILE} for {model_type}>", "exec"), namespace)  # our own template
    return RewardClass(namespace[class_name], source)
