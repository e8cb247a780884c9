"""One builder per model family, each mapping token ids to next-token logits at every position.

Importing this package imports the registry, which registers every model class with Keras
serialization, so `keras.saving.load_model(path)` works without custom_objects.
"""

from model_architectures.recurrent import RecurrentLanguageModel
from model_architectures.registry import MODEL_BUILDERS, build_model, hyperparameters_for
from model_architectures.transformer import TransformerLanguageModel

__all__ = ["MODEL_BUILDERS", "RecurrentLanguageModel", "TransformerLanguageModel", "build_model",
           "hyperparameters_for"]
