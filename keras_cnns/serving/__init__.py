"""Reading an export with TensorFlow alone: no Keras and no other keras_cnns module."""
