"""Model families, each mapping token ids to next-token logits at every position.

Importing this package loads no TensorFlow: the registry imports a family's module only when a
model is built. Call `register_model_classes()` before `keras.saving.load_model(path)` in a
process that has built no model yet.
"""

from model_architectures.registry import (FAMILIES, Family, build_model, family_names,
                                          hyperparameters_for, register_model_classes)

__all__ = ["FAMILIES", "Family", "build_model", "family_names", "hyperparameters_for",
           "register_model_classes"]
