"""On PYTHONPATH, hides the optional extras, as on a machine that installed only `.[test]`.

`import torch` raises ModuleNotFoundError, `importlib.util.find_spec("torch")` returns None and
`importlib.metadata` lists no torch distribution, in this process and in subprocesses that keep
PYTHONPATH. `.ci/run` uses it to check that every test needing an extra skips without it.
(Putting None in sys.modules would block imports too, but libraries such as SciPy take a
`sys.modules["torch"]` entry for the module itself.)
"""

import re
import sys
from importlib.machinery import PathFinder

BLOCKED = frozenset({"torch", "torchvision", "jax", "jaxlib", "onnx", "onnxruntime", "tf2onnx"})


def _blocked_distribution(distribution) -> bool:
    name = distribution.metadata["Name"] or ""
    return re.sub(r"[-_.]+", "_", name).lower() in BLOCKED


class PathFinderWithoutExtras:
    """The standard path finder, blind to the blocked top-level packages."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        return PathFinder.find_spec(name, path, target)

    @staticmethod
    def invalidate_caches():
        PathFinder.invalidate_caches()

    @staticmethod
    def find_distributions(*args, **kwargs):
        return (d for d in PathFinder.find_distributions(*args, **kwargs)
                if not _blocked_distribution(d))


sys.meta_path[:] = [PathFinderWithoutExtras if finder is PathFinder else finder
                    for finder in sys.meta_path]
