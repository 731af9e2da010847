from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from convscope.core import ModelNotFoundError, WeightsError, layer_names, resolve_layer
from convscope.core.errors import InputError
from convscope.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from convscope.models import (
    EMBEDDED_MODELS,
    ShapesCNN,
    build_architecture,
    cifar_resnet,
    load_model,
    load_state_dict,
    model_info,
)

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "src" / "convscope" / "models" / "weights"


def test_embedded_weights_are_small_tensor_only_files() -> None:
    total = 0
    for name in EMBEDDED_MODELS:
        path = WEIGHTS_DIR / f"{name}.pt"
        total += path.stat().st_size
        state = torch.load(path, weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert total < 5_000_000


@pytest.mark.parametrize("name", list(EMBEDDED_MODELS))
def test_embedded_model_loads_in_eval_mode(name: str) -> None:
    model = load_model(name)
    assert not model.training and not any(m.training for m in model.modules())
    info = model.convscope_info
    assert info.class_names == model_info(name).class_names
    assert len(info.class_names) == 6
    # layers are reachable with or without the normalization wrapper's prefix
    assert resolve_layer(model, "features.conv1") is resolve_layer(model, "model.features.conv1")
    assert resolve_layer(model, info.default_layer) is not None
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        direct = model.model((x - 0.5) / 0.25)
        torch.testing.assert_close(model(x), direct)


def test_unknown_model_name_suggests() -> None:
    with pytest.raises(ModelNotFoundError, match="shapes-cnn") as err:
        load_model("shapes-cn")
    assert "torchvision:" in str(err.value)
    with pytest.raises(ModelNotFoundError, match="resnet18"):
        load_model("torchvision:resnet181")
    with pytest.raises(ModelNotFoundError):
        build_architecture("not-an-arch")
    with pytest.raises(ModelNotFoundError, match="'torchvision:resnet18'"):
        load_model("resnet18")


def test_missing_and_corrupted_weights(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        load_model("shapes-cnn", weights=tmp_path / "absent.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a real checkpoint at all")
    with pytest.raises(WeightsError, match="corrupted"):
        load_model("shapes-cnn", weights=bad)
    truncated = tmp_path / "truncated.pt"
    good = WEIGHTS_DIR / "shapes-cnn.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(WeightsError):
        load_model("shapes-cnn", weights=truncated)
    with pytest.raises(WeightsError, match="directory"):
        load_state_dict(tmp_path)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled!",))


def test_pickled_code_is_never_loaded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"weight": _Evil()}, path)
    with pytest.raises(WeightsError, match="unpickling"):
        load_state_dict(path)
    assert "unpickled!" not in capsys.readouterr().out


def test_wrong_architecture_for_weights(tmp_path: Path) -> None:
    path = tmp_path / "small.pt"
    torch.save(cifar_resnet(20).state_dict(), path)
    with pytest.raises(WeightsError, match="do not fit"):
        load_model(path, arch="shapes-cnn")
    with pytest.raises(WeightsError, match="do not fit"):
        load_model(path, arch="cifar-resnet56")
    with pytest.raises(InputError, match="arch="):
        load_model(path)


def test_local_file_with_prefix_and_checkpoint_dict(tmp_path: Path) -> None:
    torch.manual_seed(3)
    net = ShapesCNN()
    path = tmp_path / "ckpt.th"
    torch.save(
        {
            "epoch": torch.tensor(3),
            "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
        },
        path,
    )
    model = load_model(path, arch="shapes-cnn")
    for key, value in net.state_dict().items():
        torch.testing.assert_close(model.model.state_dict()[key], value)


def test_torchvision_loading_path_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exercise torchvision's real weight-enum path with a state dict placed in its cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    weights = torchvision.models.get_model_weights("squeezenet1_1").DEFAULT
    cache = tmp_path / "hub" / "checkpoints"
    # Offline and not cached: a clear error naming where the file goes.
    with pytest.raises(WeightsError, match="place the file"):
        load_model("torchvision:squeezenet1_1")
    cache.mkdir(parents=True, exist_ok=True)  # torchvision made it when it tried to download
    torch.manual_seed(0)
    reference = torchvision.models.squeezenet1_1()
    torch.save(reference.state_dict(), cache / Path(weights.url).name)
    model = load_model("torchvision:squeezenet1_1")
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.model.state_dict()[key], value)
    info = model.convscope_info
    assert len(info.class_names) == 1000 and info.class_names[0] == "tench"
    assert info.mean == pytest.approx(IMAGENET_MEAN) and info.std == pytest.approx(IMAGENET_STD)
    x = torch.rand(1, 3, 64, 64)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference.eval()((x - mean) / std))
    with pytest.raises(ModelNotFoundError, match="IMAGENET1K_V1"):
        load_model("torchvision:squeezenet1_1:NOPE")


def test_torchvision_arch_from_local_file_infers_classes(tmp_path: Path) -> None:
    net = torchvision.models.resnet18(num_classes=7)
    path = tmp_path / "r18.pt"
    torch.save(net.state_dict(), path)
    model = load_model(path, arch="resnet18")
    assert model.model.fc.out_features == 7
    assert "layer4" in [n.removeprefix("model.") for n in layer_names(model)]


FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "cifar10_resnet"


@pytest.mark.skipif(not FIXTURE.exists(), reason="optional cross-check: ../shared fixtures absent")
def test_cifar_resnet20_fixture_classifies_chelsea_as_cat() -> None:
    import skimage.data
    import torch.nn.functional as F

    model = load_model("cifar-resnet20", weights=FIXTURE / "resnet20-12fca82f.th")
    cat = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).float()[None] / 255
    small = F.interpolate(cat, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        probs = model(small).softmax(1)[0]
    assert int(probs.argmax()) == 3  # CIFAR-10 class 3 = cat
    assert isinstance(model, nn.Module)
