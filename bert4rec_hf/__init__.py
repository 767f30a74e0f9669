"""bert4rec-hf: BERT4Rec as a Hugging Face Transformers model.

Importing this package registers `bert4rec` with `AutoConfig`, `AutoModel`, `AutoModelForMaskedLM`,
`AutoModelForCausalLM` and `AutoTokenizer`, and marks the classes so that `save_pretrained` ships their code for
`trust_remote_code=True`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from .configuration_bert4rec import Bert4RecConfig
from .modeling_bert4rec import Bert4RecForCausalLM, Bert4RecForMaskedLM, Bert4RecModel, Bert4RecPreTrainedModel
from .tokenization_bert4rec import Bert4RecTokenizer
from .pipelines import NextItemRecommendationPipeline  # registers the next-item-recommendation task


__version__ = "0.1.0"

AutoConfig.register(Bert4RecConfig.model_type, Bert4RecConfig, exist_ok=True)
AutoModel.register(Bert4RecConfig, Bert4RecModel, exist_ok=True)
AutoModelForMaskedLM.register(Bert4RecConfig, Bert4RecForMaskedLM, exist_ok=True)
AutoModelForCausalLM.register(Bert4RecConfig, Bert4RecForCausalLM, exist_ok=True)
AutoTokenizer.register(Bert4RecConfig, tokenizer_class=Bert4RecTokenizer, exist_ok=True)

# `save_pretrained` then writes `auto_map` and copies the model, config and tokenizer files beside the weights.
Bert4RecConfig.register_for_auto_class()
Bert4RecModel.register_for_auto_class("AutoModel")
Bert4RecForMaskedLM.register_for_auto_class("AutoModelForMaskedLM")
Bert4RecForCausalLM.register_for_auto_class("AutoModelForCausalLM")
Bert4RecTokenizer.register_for_auto_class("AutoTokenizer")

__all__ = [
    "Bert4RecConfig",
    "Bert4RecForCausalLM",
    "Bert4RecForMaskedLM",
    "Bert4RecModel",
    "Bert4RecPreTrainedModel",
    "Bert4RecTokenizer",
    "NextItemRecommendationPipeline",
]
