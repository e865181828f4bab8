import pytest
import torch
import torchvision

from pipeline.nets import Classifier, load_classifier, resnet_features, save_model


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("stride", [8, 16, 32])
def test_output_stride_by_dilation(depth, stride):
    net = resnet_features(depth, stride).eval()
    with torch.no_grad():
        f = net(torch.zeros(1, 3, 64, 96))
    assert f.shape[1] == (512 if depth == 18 else 2048)
    assert f.shape[2:] == (64 // stride, 96 // stride)


@pytest.mark.parametrize("stride, dilate", [(16, [False, False, True]), (8, [False, True, True])])
def test_dilation_matches_torchvision_for_bottleneck_resnets(stride, dilate):
    torch.manual_seed(0)
    ref = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=dilate).eval()
    ours = resnet_features(50, stride).eval()
    # the same parameters in the same order, under Sequential names
    ref_weights = [v for k, v in ref.state_dict().items() if not k.startswith("fc.")]
    ours.load_state_dict(dict(zip(ours.state_dict(), ref_weights)))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = torch.nn.Sequential(*list(ref.children())[:-2])(x)
        torch.testing.assert_close(ours(x), expected)


def test_dilation_keeps_the_weights_shapes():
    plain = torchvision.models.resnet18(weights=None).state_dict()
    dilated = resnet_features(18, 8).state_dict()
    # same parameters, in the same order: a torchvision checkpoint loads into the dilated net
    assert [v.shape for k, v in plain.items() if not k.startswith("fc.")] == [v.shape for v in dilated.values()]


def test_pretrained_weights_are_loaded_from_a_local_file(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    model = Classifier(5, depth=18, output_stride=16, pretrained=str(tmp_path / "resnet18.pth"))
    torch.testing.assert_close(model.backbone[0].weight, ref.conv1.weight)
    torch.testing.assert_close(model.backbone[7][1].conv2.weight, ref.layer4[1].conv2.weight)


def test_bad_pretrained_files_name_the_file(tmp_path):
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ValueError, match="r34.pth: not a state dict of this ResNet"):
        Classifier(5, depth=18, pretrained=str(tmp_path / "r34.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pth: cannot load pretrained weights"):
        Classifier(5, depth=18, pretrained=str(tmp_path / "junk.pth"))


def test_cam_is_the_head_before_pooling():
    torch.manual_seed(0)
    model = Classifier(4, depth=18, output_stride=16).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        f = model.backbone(x)
        raw = torch.nn.functional.conv2d(f, model.head.weight)  # CAM without the ReLU
        cams = model.cams(x, torch.tensor([2, 0]))
    torch.testing.assert_close(raw.mean(dim=(2, 3)), logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cams, raw[:, [2, 0]].clamp_min(0))


def test_save_and_load_classifier(tmp_path):
    model = Classifier(3, depth=18, output_stride=8)
    save_model(model, tmp_path / "m.pt", {"classes": ["a", "b", "c"]})
    loaded, extra = load_classifier(tmp_path / "m.pt")
    assert extra == {"classes": ["a", "b", "c"]} and not loaded.training
    assert loaded.arch == {"n_classes": 3, "depth": 18, "output_stride": 8}
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)
    (tmp_path / "bad.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="bad.pt: not a classifier"):
        load_classifier(tmp_path / "bad.pt")
