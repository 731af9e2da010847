from __future__ import annotations

import gc
import tracemalloc

import pytest
import torch
from torch import nn

from convscope.core import (
    InputError,
    LayerCall,
    LayerNotFoundError,
    LayerReuseError,
    edit_activations,
    layer_calls,
    probe,
    record_activations,
)


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def test_recorded_activation_equals_manual_computation(
    tiny_cnn: nn.Module, images: torch.Tensor
) -> None:
    with record_activations(tiny_cnn, ["conv1", "bn"]) as acts:
        tiny_cnn(images)
    manual_conv1 = tiny_cnn.conv1(images)
    manual_bn = tiny_cnn.bn(tiny_cnn.conv2(torch.relu(manual_conv1)))
    torch.testing.assert_close(acts["conv1"], manual_conv1)
    torch.testing.assert_close(acts["bn"], manual_bn)
    assert set(acts) == {"conv1", "bn"}


def test_inplace_op_after_layer_does_not_corrupt_record(
    tiny_cnn: nn.Module, images: torch.Tensor
) -> None:
    # conv1 is followed by ReLU(inplace=True): without the clone the record would be rectified.
    with record_activations(tiny_cnn, "conv1") as acts:
        tiny_cnn(images)
    assert bool((acts["conv1"] < 0).any())


def test_graph_connected_record_survives_inplace_op(
    tiny_cnn: nn.Module, images: torch.Tensor
) -> None:
    with record_activations(tiny_cnn, "conv1", detach=False) as acts:
        out = tiny_cnn(images)
    assert bool((acts["conv1"] < 0).any())
    (grad,) = torch.autograd.grad(out[:, 0].sum(), acts["conv1"])
    # Oracle: run the rest of the network by hand from the recorded activation.
    a = acts["conv1"].detach().requires_grad_(True)
    x = tiny_cnn.relu2(tiny_cnn.bn(tiny_cnn.conv2(torch.relu(a))))
    rest = tiny_cnn.fc(tiny_cnn.flatten(tiny_cnn.pool(x)))
    (expected,) = torch.autograd.grad(rest[:, 0].sum(), a)
    torch.testing.assert_close(grad, expected)


def test_activation_cleared_between_passes(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    with record_activations(tiny_cnn, "conv2") as acts:
        tiny_cnn(images)
        tiny_cnn(images[:2])
        assert acts["conv2"].shape[0] == 2


def test_reused_module_is_refused(reused_relu_model: nn.Module, images: torch.Tensor) -> None:
    with (
        pytest.raises(LayerReuseError, match="ran 2 times"),
        record_activations(reused_relu_model, "relu"),
    ):
        reused_relu_model(images)
    assert _hook_count(reused_relu_model) == 0
    # Modules that run once are fine in the same model, pass after pass.
    with record_activations(reused_relu_model, "conv2") as acts:
        reused_relu_model(images)
        reused_relu_model(images)
    assert acts["conv2"].shape == (5, 4, 8, 8)


def test_edit_changes_output_as_manual_computation(
    tiny_cnn: nn.Module, images: torch.Tensor
) -> None:
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 4, 1, 1)
    with edit_activations(tiny_cnn, {"conv1": lambda a: a * mask}):
        edited = tiny_cnn(images)
    x = torch.relu(tiny_cnn.conv1(images) * mask)
    x = tiny_cnn.relu2(tiny_cnn.bn(tiny_cnn.conv2(x)))
    torch.testing.assert_close(edited, tiny_cnn.fc(tiny_cnn.flatten(tiny_cnn.pool(x))))
    # and the edit is gone afterwards
    torch.testing.assert_close(
        tiny_cnn(images),
        tiny_cnn.fc(
            tiny_cnn.flatten(
                tiny_cnn.pool(
                    tiny_cnn.relu2(tiny_cnn.bn(tiny_cnn.conv2(torch.relu(tiny_cnn.conv1(images)))))
                )
            )
        ),
    )


def test_record_and_edit_same_layer_records_edited(
    tiny_cnn: nn.Module, images: torch.Tensor
) -> None:
    with probe(tiny_cnn, record=["conv1"], edit={"conv1": torch.zeros_like}) as acts:
        tiny_cnn(images)
    assert float(acts["conv1"].abs().max()) == 0.0


def test_edit_must_return_tensor(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    def bad_edit(a: torch.Tensor) -> torch.Tensor:
        return None  # type: ignore[return-value]

    with (
        pytest.raises(InputError, match="must return a tensor"),
        edit_activations(tiny_cnn, {"conv1": bad_edit}),
    ):
        tiny_cnn(images)
    assert _hook_count(tiny_cnn) == 0


def test_hooks_removed_on_exception(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        record_activations(tiny_cnn, ["conv1", "conv2"]),
    ):
        tiny_cnn(images)
        raise RuntimeError("boom")
    assert _hook_count(tiny_cnn) == 0


def test_unrun_layer_message(tiny_cnn: nn.Module) -> None:
    with (
        record_activations(tiny_cnn, "conv1") as acts,
        pytest.raises(LayerNotFoundError, match="not run"),
    ):
        acts["conv1"]


def test_hundred_calls_leave_no_hooks_and_no_growing_memory(
    tiny_cnn: nn.Module, images: torch.Tensor
) -> None:
    def one_call() -> None:
        with probe(tiny_cnn, record=["conv1", "bn"], edit={"conv2": lambda a: a * 0.5}) as acts:
            tiny_cnn(images)
        del acts

    for _ in range(10):  # warm-up: caches and allocator pools
        one_call()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(100):
        one_call()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert _hook_count(tiny_cnn) == 0
    # A leaked hook or record per call would cost > 100 x 1 kB here.
    assert growth < 50_000, growth
    assert not any(type(o) is torch.Tensor and o.shape == (5, 4, 8, 8) for o in gc.get_objects())


def test_layer_calls_reports_shapes_and_reuse(reused_relu_model: nn.Module) -> None:
    calls = layer_calls(reused_relu_model, torch.rand(2, 3, 8, 8))
    assert calls["conv1"] == LayerCall((2, 4, 8, 8), 1)
    assert calls["relu"].calls == 2
    assert calls["head.2"].shape == (2, 2)
    assert _hook_count(reused_relu_model) == 0


def test_layer_calls_keeps_train_mode_statistics_and_follows_dtype(tiny_cnn: nn.Module) -> None:
    model = tiny_cnn.double().train()
    stats = model.bn.running_mean.clone()
    calls = layer_calls(model, torch.rand(2, 3, 8, 8))  # float32 input, float64 model
    assert calls["fc"].shape == (2, 4)
    assert torch.equal(model.bn.running_mean, stats) and model.training


def test_submodule_called_directly_is_not_a_reuse(
    tiny_cnn: nn.Module, images: torch.Tensor
) -> None:
    with record_activations(tiny_cnn, "conv1") as acts:
        tiny_cnn.conv1(images)
        tiny_cnn.conv1(images[:2])  # two separate calls, not one pass
        assert acts["conv1"].shape[0] == 2
        tiny_cnn(images)
        assert acts["conv1"].shape[0] == 5


def test_a_failed_pass_does_not_poison_the_next(reused_relu_model: nn.Module) -> None:
    x = torch.rand(2, 3, 8, 8)
    with record_activations(reused_relu_model, "conv2") as acts:
        with pytest.raises(RuntimeError):
            reused_relu_model(torch.rand(2, 5, 8, 8))  # wrong channels: the forward raises
        reused_relu_model(x)  # the next pass starts afresh
        reused_relu_model(x)
    assert acts["conv2"].shape == (2, 4, 8, 8)
    with pytest.raises(LayerReuseError), record_activations(reused_relu_model, "relu"):
        reused_relu_model(x)
