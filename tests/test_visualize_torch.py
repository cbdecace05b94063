"""visualize against PyTorch: Grad-CAM equals torch autograd on each model's PyTorch twin
(ported weights; parity metric `max|ours - torch| / max|torch|` over the maps, at most 1e-4),
and a torchvision-layout alexnet2012 state dict converted to an export draws every picture."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from bad_inputs import run_in_process
from extras import require
from test_visualize import check_pictures, expected_pictures

from keras_cnns.measure import layer_views as lv
from keras_cnns.models import build_model, get_model_entry, list_models

PARITY_RTOL = 1e-4


# -- Grad-CAM against torch autograd on the PyTorch twin ------------------------------------------
def torch_grad_cam(module, x: np.ndarray) -> np.ndarray:
    """Grad-CAM of each image's predicted class at the output of the twin's last convolution
    (after its activation, as a Keras Conv2D's output is), by torch autograd."""
    import torch

    steps = [m for m in module.modules() if not list(m.children())]
    last = max(i for i, m in enumerate(steps) if isinstance(m, torch.nn.Conv2d))
    kept = {}
    handle = steps[last + 1].register_forward_hook(
        lambda _, __, output: kept.update(a=output) or output.retain_grad())
    try:
        logits = module.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    finally:
        handle.remove()
    logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    activations, gradients = kept["a"].detach(), kept["a"].grad
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activations).sum(1)).numpy()


@pytest.mark.parametrize("name", list_models())
def test_grad_cam_equals_torch_autograd_on_the_twin(name):
    require("torch")
    from test_reference_parity import _randomise

    from keras_cnns.reference import build_reference, torch_to_keras

    entry = get_model_entry(name)
    size = entry.default_image_size
    shape = (size, size + 4, 3)
    options = {**entry.test_options, "activation": "relu"}
    twin = _randomise(build_reference(name, input_shape=shape, num_classes=5, **options), 0)
    model = build_model(name, input_shape=shape, num_classes=5, **options)
    torch_to_keras(twin, model)
    x = np.random.default_rng(1).uniform(size=(3, *shape)).astype(np.float32)
    expected = torch_grad_cam(twin, x)
    got = lv.grad_cam(model, x)
    assert got.shape == expected.shape and expected.max() > 0
    gap = np.abs(got - expected).max() / np.abs(expected).max()
    print(f"{name} {shape}: Grad-CAM gap to torch autograd {gap:.1e}")
    assert gap <= PARITY_RTOL


# -- a converted alexnet2012 export ---------------------------------------------------------------
def test_a_converted_alexnet2012_export_draws_every_picture(tmp_path, capsys):
    """A torchvision-layout state dict (alexnet2012's keys, narrowed and at 64x64 to be quick)
    through `convert --to export`, then visualize: its golden probe images, no labels."""
    require("torch")
    import torch
    from test_reference_parity import _randomise

    from keras_cnns.reference import build_reference

    twin = _randomise(build_reference("alexnet2012", input_shape=(64, 64, 3), num_classes=3,
                                      width=0.25), 0)
    torch.save(twin.state_dict(), tmp_path / "alexnet.pth")
    (tmp_path / "names.txt").write_text("tabby cat\ngolden retriever\nespresso\n")
    export, output = tmp_path / "export", tmp_path / "pictures"
    code, _, err = run_in_process("convert", [
        str(tmp_path / "alexnet.pth"), "--to", "export", "--model", "alexnet2012",
        "--input-shape", "64", "64", "3", "--model-kwargs", "width=0.25",
        "--mean", "0.485", "0.456", "0.406", "--std", "0.229", "0.224", "0.225",
        "--class-names", str(tmp_path / "names.txt"), "--output", str(export)], capsys)
    assert code == 0, err
    code, _, err = run_in_process("visualize", [str(export), "--output", str(output),
                                                "--units", "0", "7"], capsys)
    assert code == 0, err
    model = keras.saving.load_model(export / "model.keras", compile=False)
    check_pictures(output, expected_pictures(model, units=(0, 7), pool=4))
    page = (output / "index.html").read_text()
    assert "random probe image 0, predicted" in page and "(class " not in page  # no labels
