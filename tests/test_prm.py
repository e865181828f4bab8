"""PRM: peak finding and its median filter, gradients through the peaks only, peak
back-propagation, proposals, their scores on a hand-made case, NMS and mAP^r by hand."""
import contextlib

import numpy as np
import pytest
import torch
from skimage import data

from pipeline import evaluate_instances as ei
from pipeline import prm
from pipeline import prm_instances as pi
from pipeline.backbones import Backbone
from pipeline.data import to_tensor
from pipeline.nets import Classifier

INSTANCE_CFG = {"strategies": ["colour", "size"], "contour_width": 3, "size_limit": [0.0, 0.85], "bg_factor": 0.95,
                "penalty": 1e-5, "balance": 0.8, "nms": 0.3}


def test_peaks_are_window_maxima_and_the_median_filter_drops_low_ones():
    m = -torch.arange(35, dtype=torch.float32).view(1, 1, 5, 7) / 100  # a smooth slope: one maximum at (0, 0)
    m[0, 0, 2, 3] = 5.0    # a peak
    m[0, 0, 4, 6] = 3.0    # a peak in the corner (outside the map counts as -inf)
    m[0, 0, 2, 5] = 4.0    # 2 columns from the 5.0: a peak in a 3x3 window, not in a 5x5 one
    peaks = prm.local_peaks(m, window=3, median_filter=False)[0, 0]
    assert sorted(map(tuple, peaks.nonzero().tolist())) == [(0, 0), (2, 3), (2, 5), (4, 6)]
    wide = prm.local_peaks(m, window=5, median_filter=False)[0, 0]
    assert sorted(map(tuple, wide.nonzero().tolist())) == [(0, 0), (2, 3)]  # (4, 6) is 2 rows from the 4.0
    # median filter: a local maximum below the map's median is dropped
    dip = torch.tensor([[9.0, 8, 7, 6.5, 0, 1, 0]]).view(1, 1, 1, 7)  # 1 is a local maximum; the median 6.5
    assert prm.local_peaks(dip, 3, median_filter=False)[0, 0, 0].nonzero().flatten().tolist() == [0, 5]
    assert prm.local_peaks(dip, 3, median_filter=True)[0, 0, 0].nonzero().flatten().tolist() == [0]
    with pytest.raises(ValueError, match="odd"):
        prm.local_peaks(m, window=2)


def test_peak_stimulation_averages_the_peaks_and_passes_gradient_only_through_them():
    maps = torch.tensor([[9.0, 8, 7, 3, 4, 3, 1]]).view(1, 1, 1, 7).requires_grad_(True)
    score = prm.peak_stimulation(maps, window=3, median_filter=False)
    assert score.item() == pytest.approx((9 + 4) / 2)  # peaks at 0 and 4
    score.sum().backward()
    assert maps.grad.flatten().tolist() == [0.5, 0, 0, 0, 0.5, 0, 0]


def test_peak_loss_trains_the_whole_network():
    torch.manual_seed(0)
    model = Classifier(3, Backbone("resnet18", 16))
    loss, _ = prm.peak_loss(model, torch.randn(2, 3, 64, 64), torch.tensor([[1.0, 0, 0], [0, 1, 1]]),
                            {"window": 3, "median_filter": True, "sub_pixel_factor": 4})
    loss.backward()
    assert torch.isfinite(loss) and model.head.weight.grad.abs().sum() > 0
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0


def test_excitation_backprop_follows_the_rule_by_hand():
    x = torch.tensor([[[[1.0, 3.0, 2.0]]]], requires_grad=True)   # 1 x 1 x 1 x 3
    weight = torch.tensor([[[[2.0, -1.0]]]])                       # a 1 x 2 kernel
    conv = torch.nn.Conv2d(1, 1, (1, 2), bias=False)
    conv.weight.data.copy_(weight)
    with prm.peak_backprop_convolutions(conv):
        out = conv(x)
        out[0, 0, 0, 0].backward()
    # output 0 sees x0, x1 shifted by min x = 1 (0, 2) with positive weights (2, 0): both products
    # are 0, so no input wins and nothing passes
    assert x.grad.abs().sum() == 0
    x.grad = None
    with prm.peak_backprop_convolutions(conv):
        conv(x)[0, 0, 0, 1].backward()
    # output 1 sees x1, x2 shifted (2, 1) with w+ (2, 0): x1 takes 2*2/(2*2 + 1*0) = 1, x2 takes 0
    assert x.grad.flatten().tolist() == pytest.approx([0, 1, 0])
    with prm.peak_backprop_convolutions(conv):
        assert "Excitation" in conv(x).grad_fn.name()
    assert "Excitation" not in conv(x).grad_fn.name()  # the normal forward is back after the block
    # signal is conserved through a layer of positive weights and inputs
    x2 = torch.rand(1, 2, 6, 6, requires_grad=True)
    conv2 = torch.nn.Conv2d(2, 3, 3, padding=1)
    conv2.weight.data.abs_()
    with prm.peak_backprop_convolutions(conv2):
        conv2(x2)[0, 1, 2, 3].backward()
    assert x2.grad.min() >= 0 and x2.grad.sum().item() == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("mode", prm.BACKPROP)
def test_peak_response_maps_are_normalised_and_local(mode):
    torch.manual_seed(0)
    model = Classifier(2, Backbone("resnet18", 16)).eval()
    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    cfg = {"window": 3, "median_filter": True, "sub_pixel_factor": 4, "peak_threshold": 0.0, "backprop": mode}
    found = prm.peak_response_maps(model, rgb, [1], cfg)
    n = len(found["peaks"])
    assert n >= 2 and found["prms"].shape == (n, 96, 128) and found["responses"].shape == (1, 96, 128)
    assert (found["peak_classes"] == 0).all() and np.all(np.diff(found["peak_scores"]) <= 0)
    assert (found["prms"] >= 0).all()
    np.testing.assert_allclose(found["prms"].reshape(n, -1).sum(1), 1.0, rtol=1e-4)
    # a class whose responses are all negative keeps its highest peak (it is in the label)
    negative = prm.select_peaks(-torch.rand(1, 1, 6, 6) - 1, [0], 3, True, 0.5)
    assert len(negative) >= 1 and negative[0][3] < 0
    none = prm.peak_response_maps(model, rgb, [], cfg)  # an image without labels: no peaks
    assert none["prms"].shape == (0, 96, 128) and none["peaks"].shape == (0, 2) and none["responses"].shape[0] == 0
    # each PRM's mass centre lies nearer its own peak than the image's far corner (receptive fields)
    ys, xs = np.mgrid[0:96, 0:128]
    for prm_map, (py, px) in zip(found["prms"], found["peaks"]):
        cy, cx = (prm_map * ys).sum(), (prm_map * xs).sum()
        assert np.hypot(cy - py, cx - px) < 0.5 * np.hypot(96, 128)


def test_the_gradient_rule_gives_autograds_input_gradient_through_a_whole_network():
    """backprop: gradient runs each convolution's backward by conv_input_gradient's routes; the
    input gradient through MobileNetV2 (depthwise, strided and dilated layers) is autograd's."""
    torch.manual_seed(0)
    model = Classifier(2, Backbone("mobilenet_v2", 16)).eval().requires_grad_(False)
    x = torch.randn(1, 3, 70, 90)
    grads = []
    for rule in (None, "gradient"):
        xi = x.clone().requires_grad_(True)
        with prm.peak_backprop_convolutions(model, rule) if rule else contextlib.nullcontext():
            maps = prm.response_maps(model, xi, 1, normalized=True)
            assert ("_GradientConv" in maps.grad_fn.name()) == (rule is not None)
            maps[0, 1, 2, 3].backward()
        grads.append(xi.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="prm.backprop must be one of"):
        with prm.peak_backprop_convolutions(model, "guided"):
            pass


def input_maps(model, x: torch.Tensor, position) -> dict:
    """Each rule's input gradient (flattened) from class 1's response at `position` (y, x)."""
    maps = {}
    for rule in prm.BACKPROP:
        xi = x.clone().requires_grad_(True)
        with prm.peak_backprop_convolutions(model, rule):
            prm.response_maps(model, xi, 1, normalized=True)[(0, 1, *position)].backward()
        maps[rule] = xi.grad.flatten()
    return maps


def test_peak_backprop_runs_in_the_arithmetic_of_a_bfloat16_backbone():
    """With backbone.precision bfloat16 the signal comes back through the convolutions in bfloat16
    too (autocast in their backward): both rules give input maps near float32's, on a photo."""
    torch.manual_seed(0)  # ImageNet weights: a random network's input gradient is near 0 and all rounding
    model = Classifier(2, Backbone("mobilenet_v2", 16, "imagenet")).eval().requires_grad_(False)
    x = model.backbone.normalize(to_tensor(data.chelsea()[::4, ::4])[None])
    grads = {}
    for precision in ("float32", "bfloat16"):
        model.backbone.precision = precision
        for rule, grad in input_maps(model, x, (2, 3)).items():
            grads[precision, rule] = grad
    for rule in prm.BACKPROP:
        exact, mixed = grads["float32", rule], grads["bfloat16", rule]
        assert mixed.dtype == torch.float32 and not torch.equal(exact, mixed)
        # measured 1.000 and 0.905: the plain gradient also follows ReLU6's on / off pattern, which
        # bfloat16's rounding flips where an activation lies near 0 or 6; excitation shares by size
        assert torch.nn.functional.cosine_similarity(exact, mixed, dim=0) > {"excitation": 0.99, "gradient": 0.8}[rule]


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_batch_norms_folded_for_peaks_give_the_same_maps(name):
    """prm_peaks folds the batch norms into the convolutions; each keeps its own weights and the
    norm's scale, so both rules give the maps of the convolutions and norms apart (ImageNet's
    norms, far from identity maps; torchvision's modules and the Lite blocks written here)."""
    x = None
    grads = {}
    for folded in (False, True):
        torch.manual_seed(0)  # the same head
        model = Classifier(2, Backbone(name, 16, "imagenet")).eval().requires_grad_(False)
        if x is None:
            x = model.backbone.normalize(to_tensor(data.chelsea()[::4, ::4])[None])
        if folded:
            prm.fold_batch_norms_for_peaks(model)
            assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
            assert sum(hasattr(m, "unfolded") for m in model.modules()) > 30
        for rule, grad in input_maps(model, x, (3, 4)).items():
            grads[folded, rule] = grad
    for rule in prm.BACKPROP:
        assert grads[False, rule].abs().sum() > 0
        torch.testing.assert_close(grads[True, rule], grads[False, rule], rtol=1e-3,
                                   atol=1e-4 * float(grads[False, rule].abs().max()))


def test_each_peak_of_one_forward_pass_gets_the_map_a_fresh_pass_gives_it():
    """The excitation rule's per-layer terms are computed once per forward pass and reused by
    every peak back-propagated through it: each PRM must equal that of a pass of its own."""
    torch.manual_seed(0)
    model = Classifier(2, Backbone("resnet18", 16)).eval()
    rgb = np.random.default_rng(1).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    cfg = {"window": 3, "median_filter": True, "sub_pixel_factor": 4, "peak_threshold": 0.0, "backprop": "excitation"}
    together = prm.peak_response_maps(model, rgb, [0, 1], cfg)
    assert len(together["peaks"]) >= 3
    x = model.backbone.normalize(prm.to_tensor(rgb)[None]).requires_grad_(True)
    for i in range(3):
        k, (py, px) = together["peak_classes"][i], together["peaks"][i]
        x.grad = None
        with prm.peak_backprop_convolutions(model):
            maps = prm.response_maps(model, x, 4, normalized=True)
            mh, mw = maps.shape[-2:]
            my, mx = round(py * (mh - 1) / 63), round(px * (mw - 1) / 95)
            maps[0, k, my, mx].backward()
        alone = x.grad[0].sum(0).clamp_min(0)
        np.testing.assert_allclose(together["prms"][i], (alone / alone.sum()).numpy(), rtol=1e-4, atol=1e-9)


def test_classes_predicted_from_peak_stimulated_scores_without_labels():
    """PRM's own inference: the classes whose peak-stimulated score exceeds class_threshold
    (the paper's 0), their peaks back-propagated as the labels' would be."""
    maps = torch.full((1, 3, 8, 8), -1.0)  # class 1: negative everywhere
    maps[0, 0] = 1.0
    maps[0, 0, 2, 2] = 5.0  # class 0: one strong peak on a positive map
    maps[0, 2] = 0.5        # class 2: flat and weakly positive
    cfg = {"window": 3, "median_filter": True, "class_threshold": 0.0}
    scores = prm.peak_stimulation(maps, 3, True)[0]
    assert scores[0] > 0 and scores[1] < 0 and scores[2] > 0
    assert prm.predicted_classes(maps, cfg) == [0, 2]
    assert prm.predicted_classes(maps, {**cfg, "class_threshold": 0.6}) == [0]
    torch.manual_seed(0)
    model = Classifier(2, Backbone("resnet18", 16)).eval()
    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    cfg = {"window": 3, "median_filter": True, "sub_pixel_factor": 4, "peak_threshold": 0.0, "backprop": "gradient"}
    with torch.no_grad():
        maps = prm.response_maps(model, to_tensor(rgb)[None], 4)
    scores = sorted(prm.peak_stimulation(maps, 3, True)[0].tolist())
    between = (scores[0] + scores[1]) / 2  # between the two classes' scores: only the stronger passes
    stronger = int(np.argmax(prm.peak_stimulation(maps, 3, True)[0].numpy()))
    for threshold, expected in ((-1e9, [0, 1]), (between, [stronger]), (1e9, [])):
        found = prm.peak_response_maps(model, rgb, None, {**cfg, "class_threshold": threshold})
        assert found["classes"] == expected == prm.predicted_classes(maps, {**cfg, "class_threshold": threshold})
        assert found["responses"].shape[0] == len(expected) and set(found["peak_classes"]) <= set(range(len(expected)))
    labelled = prm.peak_response_maps(model, rgb, [1], cfg)
    assert labelled["classes"] == [1]


def test_hierarchical_grouping_merges_similar_neighbours_first():
    # four regions in a row, colours A A B B: the colour strategy merges within colours first
    segments = np.repeat(np.arange(4), 4)[None].repeat(4, 0)
    rgb = np.zeros((4, 16, 3), np.uint8)
    rgb[:, :8] = (200, 0, 0)
    rgb[:, 8:] = (0, 0, 200)
    formed = pi.hierarchical_grouping(pi.colour_histograms(rgb, segments), np.full(4, 16), pi.region_boxes(segments),
                                      pi.region_graph(segments), segments.size, "colour")
    assert formed[:4] == [frozenset([i]) for i in range(4)] and len(formed) == 7
    assert set(formed[4:6]) == {frozenset([0, 1]), frozenset([2, 3])} and formed[6] == frozenset(range(4))
    membership = pi.merge_proposals(rgb, segments)
    assert membership.shape[1] == 4 and len({m.tobytes() for m in membership}) == len(membership)
    assert {tuple(np.flatnonzero(m)) for m in membership} >= {(0, 1), (2, 3), (0, 1, 2, 3)}
    # six equal regions in a row: every first pair ties, and the first formed merges first
    # (0-1, then 2-3 before 2 with 0-1, ...), the order of a max over the pairs as they were made
    row = np.repeat(np.arange(6), 4)[None].repeat(4, 0)
    formed = pi.hierarchical_grouping(pi.colour_histograms(np.zeros((4, 24, 3), np.uint8), row), np.full(6, 16),
                                      pi.region_boxes(row), pi.region_graph(row), row.size, "size")
    assert formed[6:9] == [frozenset([0, 1]), frozenset([2, 3]), frozenset([4, 5])]


def _gradient(mask: np.ndarray, width: int) -> np.ndarray:
    """Dilation minus erosion with a width x width square, drawn pixel by pixel; the image
    border does not erode."""
    h, w = mask.shape
    pad = width // 2
    out = np.zeros_like(mask)
    for y in range(h):
        for x in range(w):
            window = mask[max(0, y - pad):y - pad + width, max(0, x - pad):x - pad + width]
            out[y, x] = window.any() and not window.all()
    return out


def test_contour_is_the_morphological_gradient():
    segments = np.zeros((7, 7), int)
    segments[2:5, 2:5] = 1
    expected = np.zeros((7, 7), bool)
    expected[1:6, 1:6] = True   # dilation
    expected[3, 3] = False      # minus the erosion (the centre)
    np.testing.assert_array_equal(_gradient(segments == 1, 3), expected)
    prms = np.eye(49).reshape(49, 7, 7)  # one PRM per pixel: the mass is the contour itself
    mass = pi.contour_mass(np.array([[False, True]]), segments, prms, 3)
    np.testing.assert_array_equal(mass.reshape(7, 7), expected)
    edge = np.zeros((5, 5), int)
    edge[:, 2:] = 1             # region 0 touches the image border, which does not erode it
    mass = pi.contour_mass(np.array([[True, False]]), edge, np.eye(25).reshape(25, 5, 5), 3).reshape(5, 5)
    assert mass[2, 0] == 0 and mass[2, 1] == 1 and mass[2, 2] == 1 and mass[2, 3] == 0


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5])
def test_contour_mass_equals_the_drawn_gradients_of_every_proposal(width):
    rng = np.random.default_rng(width)
    rgb = (rng.random((23, 31, 3)) * 255).astype(np.uint8)
    segments = np.repeat(np.repeat(rng.integers(0, 6, (6, 8)), 4, 0), 4, 1)[:23, :31]  # blocks, some alike
    segments = np.unique(segments, return_inverse=True)[1].reshape(segments.shape)
    membership = pi.merge_proposals(rgb, segments)
    prms = rng.random((3, 23, 31))
    drawn = np.array([[(_gradient(m[segments], width) * prm).sum() for prm in prms] for m in membership])
    np.testing.assert_allclose(pi.contour_mass(membership, segments, prms, width), drawn, rtol=1e-9, atol=1e-12)
    assert width == 1 or drawn.max() > 0


def test_contour_mass_when_windows_see_many_superpixels():
    # one-pixel superpixels: a 5 x 5 window sees up to 25, too many to key a set by one integer
    rng = np.random.default_rng(0)
    segments = rng.integers(0, 30, (12, 12))
    segments = np.unique(segments, return_inverse=True)[1].reshape(segments.shape)
    membership = rng.random((6, segments.max() + 1)) < 0.5
    prms = rng.random((2, 12, 12))
    drawn = np.array([[(_gradient(m[segments], 5) * prm).sum() for prm in prms] for m in membership])
    np.testing.assert_allclose(pi.contour_mass(membership, segments, prms, 5), drawn, rtol=1e-9)


def test_proposal_scores_on_a_hand_made_case():
    # 4 x 4 image, superpixels: left half 0, right top 1, right bottom 2
    segments = np.array([[0, 0, 1, 1]] * 2 + [[0, 0, 2, 2]] * 2)
    membership = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 1], [1, 1, 1]], bool)
    prms = np.zeros((1, 4, 4))
    prms[0, 0, 2:] = 0.5            # the PRM sits on region 1's top row
    background = np.zeros((1, 4, 4), bool)
    background[0, 2:, 2:] = True    # region 2 is class background
    cfg = {**INSTANCE_CFG, "contour_width": 1, "penalty": 0.1, "size_limit": [0.0, 0.9]}
    scores = pi.score_proposals(membership, segments, prms, background, cfg)
    # width 1: no contour; score = 0.8 * PRM inside - 0.1 * background pixels inside
    np.testing.assert_allclose(scores[:3, 0], [0.0, 0.8, 0.8 - 0.4])
    assert scores[3, 0] == -np.inf  # the whole image exceeds the size limit
    # with a 3 x 3 gradient: region 1's contour holds (0, 2) but not the corner (0, 3), which the
    # image border does not erode; region 0's dilation reaches (0, 2)
    scores3 = pi.score_proposals(membership, segments, prms, background, {**cfg, "contour_width": 3})
    np.testing.assert_allclose(scores3[:3, 0], [0.5, 0.8 + 0.5, 0.8 + 0.5 - 0.4])
    assert scores3.argmax(0)[0] == 1


def test_nms_keeps_the_best_of_overlapping_instances_across_classes():
    masks = np.zeros((4, 10, 10), bool)
    masks[0, :5, :5] = True
    masks[1, :5, :4] = True    # IoU with 0: 20 / 25 = 0.8 -> dropped
    masks[2, 5:, 5:] = True    # disjoint
    masks[3, :5, 3:8] = True   # IoU with 0: 10 / 40 = 0.25 < 0.3 -> kept
    assert pi.instance_nms(np.array([0.9, 0.95, 0.5, 0.3]), masks, 0.3) == [1, 2, 3]
    assert pi.instance_nms(np.array([0.99, 0.95, 0.5, 0.3]), masks, 0.3) == [0, 2, 3]
    assert pi.instance_nms(np.array([0.99, 0.95, 0.5, 0.3]), masks, 0.2) == [0, 2]
    sem = pi.semantic_mask(masks[[0, 3]], np.array([2, 5]), np.array([0.3, 0.9]), (10, 10))
    assert sem[0, 4] == 5 and sem[0, 0] == 2 and sem[9, 9] == 0  # the better instance wins the overlap


def test_average_precision_by_hand():
    # ranked TP, FP, TP with 3 ground-truth instances: recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3
    # monotone envelope: 1 up to recall 1/3, 2/3 up to 2/3 -> AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    assert ei.average_precision([0.9, 0.8, 0.7], [True, False, True], 3) == pytest.approx(5 / 9)
    assert ei.average_precision([], [], 2) == 0.0
    assert np.isnan(ei.average_precision([0.5], [False], 0))


def test_map_r_matches_masks_as_pascal_does():
    h, w = 8, 8
    inst = np.zeros((h, w), np.uint8)
    inst[:4, :4], inst[4:, 4:] = 1, 2
    cls = np.where(inst > 0, 3, 0).astype(np.uint8)  # two objects of class 3
    inst[0, :] = 255                                  # an ignored row
    gm, gc = ei.ground_truth_instances(inst, cls)
    assert gc.tolist() == [3, 3] and gm.sum() == 12 + 16
    acc = ei.InstanceScores(n_classes=4)
    pred = np.zeros((3, h, w), bool)
    pred[0, :4, :4] = True           # object 1 exactly (ignored row left out): TP
    pred[1, :4, :3] = True           # object 1 again (IoU 9/12): a duplicate, FP
    pred[2, 4:, 4:6] = True          # half of object 2: IoU 0.5 -> TP
    acc.add(pred, [3, 3, 3], [0.9, 0.8, 0.7], gm, gc, inst != 255)
    # a second image: one object of class 1 missed, a class-2 false positive
    inst2 = np.zeros((h, w), np.uint8)
    inst2[2:6, 2:6] = 1
    gm2, gc2 = ei.ground_truth_instances(inst2, np.where(inst2 > 0, 1, 0).astype(np.uint8))
    acc.add(np.ones((1, h, w), bool), [2], [0.5], gm2, gc2, inst2 != 255)
    res = acc.result(["a", "b", "c", "d"])
    assert res["ap_per_class"]["c"] == pytest.approx(5 / 6)  # TP, FP, TP of 2: 1/2 * 1 + 1/2 * 2/3
    assert res["ap_per_class"]["a"] == 0.0 and res["ap_per_class"]["b"] is None  # b has no ground truth
    assert res["map_r"] == pytest.approx((5 / 6 + 0.0) / 2)
    assert res["same_class_pairs"] == {"images_classes": 1, "two_or_more_predicted": 1.0, "two_or_more_matched": 1.0}


def test_image_instances_find_two_objects_of_one_class():
    # two same-colour squares on a plain background, one PRM on each
    rgb = np.full((20, 40, 3), 30, np.uint8)
    rgb[5:15, 5:15] = (200, 50, 50)
    rgb[5:15, 25:35] = (200, 50, 50)
    from pipeline.superpixels import superpixels

    segments = superpixels(rgb, "slic", n_segments=20, compactness=10)
    prms = np.zeros((2, 20, 40), np.float32)
    prms[0, 8:12, 8:12] = 1
    prms[1, 8:12, 28:32] = 1
    responses = np.zeros((1, 20, 40), np.float32)
    responses[0, 5:15, 5:15] = responses[0, 5:15, 25:35] = 1
    peaks = {"peak_classes": np.array([4, 4]), "prms": prms, "responses": responses, "keys": np.array([4])}
    found = pi.image_instances(rgb, segments, peaks, {**INSTANCE_CFG, "size_limit": [0.0, 0.85]})
    assert found["classes"].tolist() == [4, 4] and sorted(found["peak_index"].tolist()) == [0, 1]
    for m in found["masks"]:
        left = m[5:15, 5:15].mean() > 0.9 and not m[:, 20:].any()
        right = m[5:15, 25:35].mean() > 0.9 and not m[:, :20].any()
        assert left or right
    sem = pi.semantic_mask(found["masks"], found["classes"], found["scores"], (20, 40))
    assert (sem[5:15, 5:15] == 4).mean() > 0.9 and (sem[5:15, 25:35] == 4).mean() > 0.9 and sem[0, 0] == 0
    none = pi.image_instances(rgb, segments, {**peaks, "peak_classes": np.zeros(0, int), "prms": prms[:0]},
                              INSTANCE_CFG)
    assert none["masks"].shape == (0, 20, 40)


def test_scoring_constants_scale_from_the_papers_448_inputs():
    from pipeline.prm_instances import scaled_scoring

    cfg = {"penalty": 1e-5, "contour_width": 5, "reference_size": 448, "balance": 0.8}
    assert scaled_scoring(cfg, 448, 448)["penalty"] == pytest.approx(1e-5)
    assert scaled_scoring(cfg, 448, 448)["contour_width"] == 5
    small = scaled_scoring(cfg, 224, 224)  # a quarter of the pixels: each counts 4 x, the band halves
    assert small["penalty"] == pytest.approx(4e-5) and small["contour_width"] == 2 and small["balance"] == 0.8
    assert scaled_scoring(cfg, 40, 40)["contour_width"] == 1
    assert scaled_scoring({**cfg, "reference_size": None}, 224, 224) == {**cfg, "reference_size": None}


@pytest.mark.parametrize("c_in, c_out, k, stride, padding, dilation, groups, size", [
    (8, 8, 3, 1, 1, 1, 8, (9, 11)),    # depthwise
    (8, 8, 3, 2, 1, 1, 8, (9, 12)),    # depthwise, stride 2 (odd and even sides)
    (8, 8, 3, 1, 4, 4, 8, (10, 9)),    # depthwise, dilated
    (6, 4, 1, 1, 0, 1, 1, (7, 5)),     # 1x1: a matrix product
    (3, 5, 3, 2, 1, 1, 1, (11, 10)),   # a dense stem
    (4, 6, 3, 1, 2, 2, 2, (8, 9)),     # grouped, dilated
    (4, 4, 7, 2, 3, 1, 1, (15, 16)),   # ResNet's 7x7 stem
    (4, 6, 1, 2, 0, 1, 1, (9, 9)),     # a strided 1x1 shortcut
    (2, 2, (1, 2), 1, 0, 1, 1, (1, 3)),  # a kernel wider than its padding
])
def test_conv_input_gradient_is_autograds(c_in, c_out, k, stride, padding, dilation, groups, size):
    """The fast routes of the excitation rule's backward give the gradient autograd gives."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(c_in, c_out, k, stride, padding, dilation, groups, bias=False)
    x = torch.randn(2, c_in, *size, requires_grad=True)
    y = conv(x)
    grad = torch.randn_like(y)
    y.backward(grad)
    fast = prm.conv_input_gradient(conv.weight.detach(), grad, x.shape, conv.stride, conv.padding, conv.dilation,
                                   conv.groups)
    assert fast.shape == x.shape
    torch.testing.assert_close(fast, x.grad, rtol=1e-4, atol=1e-5)
