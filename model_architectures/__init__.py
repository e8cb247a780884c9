"""One builder per model family, each mapping token ids to next-token logits at every position.

Importing this package registers every model class with Keras serialization, so any checkpoint
training writes loads with nothing else imported: `load_trained_model(path)` for inference (no
optimizer), or `keras.saving.load_model(path)` with its optimizer (see saving.py).
"""

from model_architectures.recurrent import RecurrentLanguageModel
from model_architectures.registry import MODEL_BUILDERS, build_model, hyperparameters_for
from model_architectures.saving import load_trained_model
from model_architectures.transformer import TransformerLanguageModel

__all__ = ["MODEL_BUILDERS", "RecurrentLanguageModel", "TransformerLanguageModel", "build_model",
           "hyperparameters_for", "load_trained_model"]
