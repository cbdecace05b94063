"""keras_cnns: exact, tested Keras 3 reference implementations of LeNet-5 and AlexNet."""

__version__ = "0.1.0"
