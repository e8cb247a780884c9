"""Model families, each mapping token ids to next-token logits at every position.

Importing this package loads no TensorFlow: the registry imports a family's module only when a
model is built. To read a checkpoint: `model_architectures.saving.load_trained_model(path)` for
inference, or `register_model_classes()` then `keras.saving.load_model(path)` with its optimizer.
"""

from model_architectures.registry import (FAMILIES, Family, build_model, family_names,
                                          hyperparameters_for, register_model_classes)

__all__ = ["FAMILIES", "Family", "build_model", "family_names", "hyperparameters_for",
           "register_model_classes"]
