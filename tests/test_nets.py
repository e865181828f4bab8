import pytest
import torch
import torchvision

from pipeline.backbones import BACKBONES, Backbone, build_backbone, imagenet_network
from pipeline.nets import (AffinityNet, Classifier, DeepLab, init_from_classifier, load_affinity_net,
                           load_classifier, load_segmenter, save_model)
from pipeline.weights import WeightFileError


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2", "efficientnet_lite0", "efficientnet_lite2"])
@pytest.mark.parametrize("stride", [8, 16, 32])
def test_output_stride_by_dilation(name, stride):
    net = Backbone(name, stride).eval()
    with torch.no_grad():
        stages = net.stages(torch.zeros(1, 3, 64, 96))
        f = net(torch.zeros(1, 3, 64, 96))
    assert f.shape[1] == net.out_channels == {"resnet18": 512, "resnet50": 2048}.get(name, 1280)
    assert f.shape[2:] == (64 // stride, 96 // stride)
    # stage ends at strides 4, 8, 16, 32, none finer than the output stride
    assert [s.shape[2:] for s in stages] == [(64 // min(s, stride), 96 // min(s, stride)) for s in (4, 8, 16, 32)]
    assert [s.shape[1] for s in stages] == net.stage_channels


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_resnets_written_here_equal_torchvision_s_names_initial_weights_and_outputs(depth):
    from pipeline.resnet import ResNet

    torch.manual_seed(0)
    ref = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    torch.manual_seed(0)
    ours = ResNet(depth).eval()
    expected, got = ref.state_dict(), ours.state_dict()
    assert list(got) == list(expected)  # the same names in the same order: torchvision's files load strictly
    for k in expected:  # seeded alike, the same random start
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0, msg=k)
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("stride, dilate", [(16, [False, False, True]), (8, [False, True, True])])
def test_dilation_matches_torchvision_for_bottleneck_resnets(stride, dilate):
    torch.manual_seed(0)
    ref = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=dilate).eval()
    ours = Backbone("resnet50", stride).eval()
    # the same parameters in the same order, under the backbone's names
    ref_weights = [v for k, v in ref.state_dict().items() if not k.startswith("fc.")]
    ours.load_state_dict(dict(zip(ours.state_dict(), ref_weights)))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = torch.nn.Sequential(*list(ref.children())[:-2])(ours.normalize(x))
        torch.testing.assert_close(ours(x), expected)


def test_dilation_keeps_the_weights_shapes():
    plain = torchvision.models.resnet18(weights=None).state_dict()
    dilated = Backbone("resnet18", 8).state_dict()
    # same parameters, in the same order: a torchvision checkpoint loads into the dilated net
    assert [v.shape for k, v in plain.items() if not k.startswith("fc.")] == [v.shape for v in dilated.values()]


def test_each_backbone_normalises_as_its_weights_were_trained():
    x = torch.full((1, 3, 2, 2), 127 / 255)
    torch.testing.assert_close(Backbone("efficientnet_lite0", 32).normalize(x), torch.zeros(1, 3, 2, 2))
    r = Backbone("resnet18", 32)
    torch.testing.assert_close(r.normalize(torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)),
                               torch.zeros(1, 3, 1, 1))
    # the saved arch carries the normalisation, and a rebuilt model uses the saved one
    model = Classifier(2, Backbone("efficientnet_lite0", 16))
    assert model.arch["backbone"]["normalization"]["std"] == [128 / 255] * 3


def test_local_weight_files_load_strictly(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    model = Classifier(5, Backbone("resnet18", 16, str(tmp_path / "resnet18.pth")))
    torch.testing.assert_close(model.backbone.stem[0].weight, ref.conv1.weight)
    torch.testing.assert_close(model.backbone.blocks[-1].conv2.weight, ref.layer4[1].conv2.weight)
    # without the ImageNet classifier layer too
    torch.save({k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}, tmp_path / "nofc.pth")
    Backbone("resnet18", 16, str(tmp_path / "nofc.pth"))


def test_bad_weight_files_name_the_file_and_the_reason(tmp_path):
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(WeightFileError, match="r34.pth: not a state dict of resnet18"):
        Backbone("resnet18", 16, str(tmp_path / "r34.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(WeightFileError, match="junk.pth: not a file torch.save wrote"):
        Backbone("resnet18", 16, str(tmp_path / "junk.pth"))
    (tmp_path / "cut.pth").write_bytes((tmp_path / "r34.pth").read_bytes()[:100_000])  # a truncated download
    with pytest.raises(WeightFileError, match="cut.pth: cannot load the weights of resnet18"):
        Backbone("resnet18", 16, str(tmp_path / "cut.pth"))
    with pytest.raises(WeightFileError, match="absent.pth: backbone weights of resnet18 not found"):
        Backbone("resnet18", 16, str(tmp_path / "absent.pth"))
    with pytest.raises(ValueError, match="unknown backbone 'vgg16'"):
        Backbone("vgg16", 16)


def test_frozen_batch_norm_keeps_its_statistics_in_training():
    torch.manual_seed(0)
    for freeze in (True, False):
        net = build_backbone({"name": "resnet18", "weights": "none", "freeze_bn": freeze, "frozen_stages": 0},
                             16).train()
        before = net.stem[1].running_mean.clone()
        net(torch.rand(2, 3, 32, 32)).sum().backward()
        assert torch.equal(net.stem[1].running_mean, before) == freeze
        assert net.stem[1].weight.grad is not None  # the affine parameters learn either way
    auto = {"name": "efficientnet_lite0", "freeze_bn": "auto", "frozen_stages": 0}
    assert build_backbone({**auto, "weights": "imagenet"}, 16).freeze_bn
    assert not build_backbone({**auto, "weights": "none"}, 16).freeze_bn
    # starting from a trained classifier of an ImageNet config: no weights loaded, BN still fixed
    assert build_backbone({**auto, "weights": "imagenet"}, 16, load_weights=False).freeze_bn


@pytest.mark.parametrize("frozen", [0, 2, 4])
def test_frozen_stages_keep_their_weights_and_still_pass_gradients_to_the_input(frozen):
    torch.manual_seed(0)
    net = Backbone("mobilenet_v2", 16, frozen_stages=frozen).train()
    first_trained = net.blocks[net.n_frozen] if frozen < 4 else None
    out = net(torch.rand(2, 3, 64, 64))
    assert out.requires_grad == (frozen < 4)  # all of it fixed: no graph at all
    if frozen < 4:
        out.sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in net.stem.parameters()) == (frozen > 0)
    assert all(p.grad is None for p in net.blocks[:net.n_frozen].parameters())
    if first_trained is not None:
        assert all(p.grad is not None for p in first_trained.parameters())
    assert net.n_frozen == {0: 0, 2: 6, 4: len(net.blocks)}[frozen]  # MobileNetV2's stride-8 stage ends at block 6
    # in eval mode the input still gets a gradient through the frozen part (PRM needs it)
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    net.eval()(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_every_registered_backbone_builds_its_imagenet_network():
    for name in BACKBONES:
        assert isinstance(imagenet_network(name), torch.nn.Module)


def test_cam_is_the_head_before_pooling():
    torch.manual_seed(0)
    model = Classifier(4, Backbone("resnet18", 16)).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        f = model.backbone(x)
        raw = torch.nn.functional.conv2d(f, model.head.weight)  # CAM without the ReLU
        cams = model.cams(x, torch.tensor([2, 0]))
    torch.testing.assert_close(raw.mean(dim=(2, 3)), logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cams, raw[:, [2, 0]].clamp_min(0))


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0"])
def test_save_and_load_classifier(tmp_path, name):
    model = Classifier(3, Backbone(name, 8))
    save_model(model, tmp_path / "m.pt", {"classes": ["a", "b", "c"]})
    loaded, extra = load_classifier(tmp_path / "m.pt")
    assert extra == {"classes": ["a", "b", "c"]} and not loaded.training
    assert loaded.arch == model.arch and loaded.arch["backbone"]["name"] == name
    assert loaded.arch["backbone"]["output_stride"] == 8
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)
    (tmp_path / "bad.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="bad.pt: not a classifier"):
        load_classifier(tmp_path / "bad.pt")


def test_networks_on_other_backbones_start_from_the_classifier(tmp_path):
    classifier = Classifier(3, Backbone("mobilenet_v2", 16))
    save_model(classifier, tmp_path / "c.pt", {"classes": ["a", "b", "c"]})
    aff = AffinityNet(Backbone("mobilenet_v2", 8))
    init_from_classifier(aff, tmp_path / "c.pt", "affinity")
    torch.testing.assert_close(aff.backbone.blocks[3].conv[1][0].weight,
                               classifier.backbone.blocks[3].conv[1][0].weight)
    with torch.no_grad():
        assert aff(torch.rand(1, 3, 64, 64)).shape == (1, 448, 8, 8)
    with pytest.raises(ValueError,
                       match="the classifier's backbone is mobilenet_v2, segmenter.backbone.name is resnet18"):
        init_from_classifier(DeepLab(3, "aspp", Backbone("resnet18", 8)), tmp_path / "c.pt", "segmenter")
    with pytest.raises(ValueError, match="classifier's features end at its head"):
        init_from_classifier(AffinityNet(Backbone("mobilenet_v2", 8, features="last_block")), tmp_path / "c.pt",
                             "affinity")
    with pytest.raises(ValueError, match="output stride 8 or 16"):
        DeepLab(3, "aspp", Backbone("resnet18", 32))


def test_forward_only_loads_give_the_saved_networks_outputs(tmp_path):
    """Stages that only run a network forward load it with its batch norms folded and, on a CPU,
    in channels-last layout: the CAMs, the affinity features and the segmenter's scores of a
    photo-sized image stay those of the saved network."""
    torch.manual_seed(0)
    x, present = torch.rand(1, 3, 75, 101), torch.tensor([0, 2])
    nets = {"classifier": (Classifier(3, Backbone("mobilenet_v2", 16)), load_classifier, lambda m: m.cams(x, present)),
            "affinity": (AffinityNet(Backbone("mobilenet_v2", 8)), load_affinity_net, lambda m: m(x)),
            "segmenter": (DeepLab(3, "aspp", Backbone("mobilenet_v2", 16)), load_segmenter, lambda m: m(x))}
    for name, (net, load, run) in nets.items():
        for m in net.modules():  # norms far from the identity, so that folding is exercised
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(-2, 2)
        save_model(net, tmp_path / f"{name}.pt")
        plain, _ = load(tmp_path / f"{name}.pt")
        fast, _ = load(tmp_path / f"{name}.pt", forward_only=True)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.backbone.modules())
        conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            a, b = run(plain), run(fast)
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-4 * a.abs().max().item()), name


def test_networks_on_a_bfloat16_backbone_keep_it_when_loaded_and_give_float32_outputs(tmp_path):
    """backbone.precision bfloat16 covers the backbone and the heavy heads (AffinityNet's, DeepLab's);
    a saved network is loaded (plainly or forward-only) in that precision, and its CAMs, affinity
    features and segmenter scores are float32, near those of the same weights in float32."""
    torch.manual_seed(0)
    x, present = torch.rand(1, 3, 75, 101), torch.tensor([0, 2])
    nets = {"classifier": (lambda b: Classifier(3, b), 16, load_classifier, lambda m: m.cams(x, present)),
            "affinity": (AffinityNet, 8, load_affinity_net, lambda m: m(x)),
            "segmenter": (lambda b: DeepLab(3, "aspp", b), 16, load_segmenter, lambda m: m(x))}
    for name, (build, stride, load, run) in nets.items():
        exact = build(Backbone("mobilenet_v2", stride, "imagenet")).eval()
        mixed = build(Backbone("mobilenet_v2", stride, precision="bfloat16"))
        mixed.load_state_dict(exact.state_dict())
        save_model(mixed, tmp_path / f"{name}.pt")
        for forward_only in (False, True):
            loaded, _ = load(tmp_path / f"{name}.pt", forward_only=forward_only)
            assert loaded.backbone.precision == "bfloat16"
            with torch.no_grad():
                a, b = run(exact), run(loaded)
            error = ((a - b).norm() / a.norm()).item()
            assert b.dtype == torch.float32 and 0 < error < 0.1, (name, forward_only, error)
    head = AffinityNet(Backbone("mobilenet_v2", 8))  # the head itself in the backbone's precision
    stages = [torch.randn(1, c, 10, 13) for c in head.backbone.stage_channels[1:]]
    with torch.no_grad():
        exact = head.embed(stages)
        head.backbone.precision = "bfloat16"
        mixed = head.embed(stages)
    assert mixed.dtype == torch.float32 and not torch.equal(exact, mixed)
    torch.testing.assert_close(mixed, exact, rtol=0.05, atol=0.05 * exact.abs().max().item())


@pytest.mark.parametrize("name,channels", [("mobilenet_v2", 320), ("efficientnet_lite0", 320), ("resnet18", 512)])
def test_last_block_features_end_before_the_imagenet_head_and_rebuild_from_arch(name, channels, tmp_path):
    torch.manual_seed(0)
    head, last = Backbone(name, 16).eval(), Backbone(name, 16, features="last_block").eval()
    last.load_state_dict({k: v for k, v in head.state_dict().items() if not k.startswith("head.")})
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        f = last(x)
        # the same blocks: the head's 1x1 convolution applied to these features gives the head's
        assert torch.allclose(head.head(f), head(x), atol=1e-5)
    assert f.shape[1] == last.out_channels == last.stage_channels[-1] == channels
    assert last.arch["features"] == "last_block"
    assert "features" not in head.arch  # models saved before the option rebuild as they were
    model = Classifier(20, last)
    save_model(model, tmp_path / "m.pt")
    loaded, _ = load_classifier(tmp_path / "m.pt")
    assert loaded.backbone.out_channels == channels and loaded.backbone.feature_layer == "last_block"
    with torch.no_grad():
        assert torch.allclose(loaded.backbone(x), f, atol=1e-5)
    with pytest.raises(ValueError, match="features"):
        Backbone(name, 16, features="stem")
