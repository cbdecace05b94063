"""Preflight's weight-free build leans on a private Keras list; without it, a child does it."""

import sys

import pytest

from keras_cnns import preflight
from keras_cnns.config import ConfigError, RunConfig


def _without_private_registry(monkeypatch):
    import keras.src.backend.common as common

    monkeypatch.delattr(common, "global_state")
    monkeypatch.setitem(sys.modules, "keras.src.backend.common.global_state", None)


def _registry_that_keras_no_longer_fills(monkeypatch):
    from keras.src.backend.common import global_state

    real = global_state.get_global_attribute

    def elsewhere(name, *args, **kwargs):
        return [] if name == "uninitialized_variables" else real(name, *args, **kwargs)

    monkeypatch.setattr(global_state, "get_global_attribute", elsewhere)


@pytest.mark.slow
@pytest.mark.parametrize("break_it", [_without_private_registry,
                                      _registry_that_keras_no_longer_fills])
def test_without_the_private_registry_the_model_is_sized_in_a_child(monkeypatch, capsys,
                                                                     break_it):
    config = RunConfig(model="lenet", width=0.5).resolve()
    in_process = preflight.estimate_memory(config)
    break_it(monkeypatch)
    assert preflight.estimate_memory(config) == in_process
    assert "sized in a child process" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="activation"):
        preflight.estimate_memory(
            RunConfig(model="lenet", model_kwargs={"activation": "nope"}).resolve())


def test_the_probe_finds_keras_own_registry_and_leaves_it_as_it_was():
    from keras.src.backend.common import global_state

    before = len(global_state.get_global_attribute("uninitialized_variables", [], True))
    registry = preflight._pending_variables()
    assert registry is global_state.get_global_attribute("uninitialized_variables")
    assert len(registry) == before
