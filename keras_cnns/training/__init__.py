"""Training: strategies, the Keras `fit` trainer and the multi-worker loop."""

from keras_cnns.training.trainer import TrainingDivergedError, TrainResult, evaluate, train

__all__ = ["TrainResult", "TrainingDivergedError", "evaluate", "train"]
