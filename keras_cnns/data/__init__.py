"""The data layer: sources (digits, IDX, image folders, TFDS, synthetic) and one tf.data pipeline.

    source = load_source("digits")                     # the embedded, offline default
    train = build_pipeline(source, "train", image_size=32, batch_size=64, augment="light")
    source.info.to_dict()                              # fingerprint, mean/std, ... for export
"""

from keras_cnns.data.augment import AugmentPolicy, augment_batch, list_augment_policies
from keras_cnns.data.base import SPLITS, DataError, DataSource, SourceInfo
from keras_cnns.data.idx import read_idx, write_idx
from keras_cnns.data.pipeline import build_pipeline, preprocess
from keras_cnns.data.sources import list_sources, load_source
from keras_cnns.data.subset import subset_training_split

__all__ = [
    "SPLITS",
    "AugmentPolicy",
    "DataError",
    "DataSource",
    "SourceInfo",
    "augment_batch",
    "build_pipeline",
    "list_augment_policies",
    "list_sources",
    "load_source",
    "preprocess",
    "read_idx",
    "subset_training_split",
    "write_idx",
]
