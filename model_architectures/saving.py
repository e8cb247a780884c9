"""Reading the .keras files that training writes, with nothing imported but this package.

A checkpoint holds the model (architecture and weights) and its compiled training state: the
optimizer with its learning-rate schedule, the masked loss and metrics. Inference needs only the
model: `load_trained_model(path)` loads it without the optimizer. A full
`keras.saving.load_model(path)` also works after `register_model_classes()`: the families'
`compile_from_config` first imports the module that defines the training objects the checkpoint
names, so no caller has to know which ones they are.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import keras

from data_pipeline.errors import DataError

# Importing it registers every class a training compile config names: WarmupCosineDecay (defined
# there) and the masked metrics (evaluation.metrics, which it imports). It is imported only when a
# checkpoint is loaded with its optimizer, so the model package never loads training code itself.
TRAINING_OBJECTS_MODULE = "training_assets.compile"


class RestoresTrainingState:
    """Mixin for every family: a compiled load finds the training objects without custom_objects."""

    def compile_from_config(self, config: dict[str, Any]) -> None:
        importlib.import_module(TRAINING_OBJECTS_MODULE)
        super().compile_from_config(config)


def load_trained_model(path: str | os.PathLike) -> keras.Model:
    """The model in a training checkpoint, for inference: weights only, no optimizer.

    safe_mode stays on (a file that needs arbitrary code is refused); every failure is one
    DataError naming the file.
    """
    from model_architectures.registry import register_model_classes

    register_model_classes()
    try:
        return keras.saving.load_model(path, compile=False)
    except ValueError as error:
        if "safe_mode" in str(error):
            raise DataError(f"{os.fspath(path)!r} contains code (e.g. a Lambda layer) that Keras "
                            "only loads with safe_mode=False, which runs arbitrary code from the "
                            "file: this project never does that; retrain with the project's model "
                            "families, or load it yourself only if you trust its source") from None
        raise DataError(f"{os.fspath(path)!r} cannot be loaded as a Keras model: {error}") from None
    except TypeError as error:  # unknown registered class, e.g. from another project
        raise DataError(f"{os.fspath(path)!r} uses a class this project does not define: "
                        f"{error}") from None
