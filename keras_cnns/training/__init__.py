"""Training: strategies, the Keras `fit` trainer and the multi-worker loop.

Scoring a model, a run or an export is `keras_cnns.training.evaluation`.
"""

from keras_cnns.training.trainer import TrainingDivergedError, TrainResult, train

__all__ = ["TrainResult", "TrainingDivergedError", "train"]
