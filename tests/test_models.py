"""The network zoo: sizes, torchvision equivalence, plain twins, every BN knob, argument checks, Hydra configs."""

from __future__ import annotations

import copy
import itertools
import pickle
from pathlib import Path

import pytest

from bnres.models.zoo import residual_twin
import torch
from torch import nn

from bnres import models as M
from bnres.models import (
    BN_IMPLS,
    BN_PLACEMENTS,
    BUILDERS,
    MODEL_NAMES,
    NORM_TYPES,
    ResNet,
    ScratchBatchNorm1d,
    ScratchBatchNorm2d,
    ZeroPadShortcut,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: on a shared 2-core box, intra-op threading costs far more than it saves (50x here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

CONF = Path(__file__).parents[1] / "conf"
IMAGENET = ("resnet18", "resnet34", "plain18", "plain34")
CIFAR = ("resnet_cifar", "plain_cifar")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(name: str, **kw) -> nn.Module:
    args = {"in_channels": 3, "num_classes": 10, "image_size": 32, **kw}
    return BUILDERS[name](**args)


def test_exports():
    assert MODEL_NAMES == ("lenet", "mlp", "resnet18", "resnet34", "plain18", "plain34", "resnet_cifar", "plain_cifar")
    assert BN_PLACEMENTS == ("before_activation", "after_activation", "pre_activation")
    assert BN_IMPLS == ("torch", "scratch")
    assert all(callable(getattr(M, name)) for name in MODEL_NAMES)


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("name", "classes", "expected"),
    [
        ("resnet18", 10, 11_181_642),
        ("resnet34", 10, 21_289_802),
        ("resnet18", 1000, 11_689_512),
        ("resnet34", 1000, 21_797_672),
    ],
)
def test_imagenet_param_counts_match_torchvision(name, classes, expected):
    assert n_params(build(name, num_classes=classes, image_size=224)) == expected


@pytest.mark.parametrize(
    ("depth", "expected"), [(20, 269_722), (32, 464_154), (44, 658_586), (56, 853_018), (110, 1_727_962)]
)
def test_cifar_param_counts(depth, expected):
    res, plain = build("resnet_cifar", depth=depth), build("plain_cifar", depth=depth)
    assert n_params(res) == expected
    # option-A shortcuts are parameter-free: the plain twin has exactly the same parameters
    assert [(k, v.shape) for k, v in plain.state_dict().items()] == [(k, v.shape) for k, v in res.state_dict().items()]
    n = (depth - 2) // 6
    assert [len(s) for s in (res.layer1, res.layer2, res.layer3)] == [n, n, n]
    assert sum(isinstance(m, nn.Conv2d) for m in res.modules()) + 1 == depth  # + the fc layer


@pytest.mark.parametrize(
    ("plain", "res", "bn"),
    [("plain18", "resnet18", True), ("plain18", "resnet18", False), ("plain34", "resnet34", True)],
)
def test_plain_imagenet_is_resnet_minus_projections(plain, res, bn):
    p, r = build(plain, bn=bn), build(res, bn=bn)
    rs = {k: v.shape for k, v in r.state_dict().items() if "downsample" not in k}
    assert {k: v.shape for k, v in p.state_dict().items()} == rs
    assert not any("downsample" in k for k in p.state_dict())
    assert sum("downsample" in k for k in r.state_dict()) > 0


def test_plain_twin_has_no_additions():
    """Zeroing every block's second conv kills a plain net's signal but not a residual net's (identity path)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    for name, has_shortcut in [("resnet_cifar", True), ("plain_cifar", False)]:
        net = build(name, depth=8, bn=False).eval()
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, M.BasicBlock):
                    m.conv2.weight.zero_()
                    m.conv2.bias.zero_()
            net.fc.bias.zero_()
            out = net(x)
        assert (out.abs().sum() > 0) == has_shortcut


# ---------------------------------------------------------------- torchvision equivalence


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_same_as_torchvision(name):
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    ref = getattr(tvm, name)(num_classes=10)
    ours = build(name, num_classes=10)
    assert list(ours.state_dict()) == list(ref.state_dict())  # same keys, same order
    ours.load_state_dict(ref.state_dict())
    # the harness's way too: torchvision's tensors zipped in order onto ours
    zipped = build(name, num_classes=10)
    with torch.no_grad():
        for a, b in zip(zipped.state_dict().values(), ref.state_dict().values(), strict=True):
            a.copy_(b)
    x = torch.randn(2, 3, 32, 32)  # small, but layer4 still sees 2 values per channel in train mode
    for training in (True, False):
        for m in (ours, zipped, ref):
            m.train(training)
        y_ref = ref(x)
        torch.testing.assert_close(ours(x), y_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(zipped(x), y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(ours.state_dict().values(), ref.state_dict().values()):  # train mode moved stats alike
        torch.testing.assert_close(a, b)


def test_torchvision_layout_details():
    net = build("resnet18")
    assert (net.conv1.kernel_size, net.conv1.stride) == ((7, 7), (2, 2))
    assert isinstance(net.maxpool, nn.MaxPool2d)
    assert [net.layer2[0].downsample[0].kernel_size, net.layer2[0].downsample[0].stride] == [(1, 1), (2, 2)]
    assert net.layer1[0].downsample is None  # no shape change, identity shortcut
    small = build("resnet18", stem="small")
    assert (small.conv1.kernel_size, small.conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(small.maxpool, nn.Identity)
    assert n_params(small) == n_params(net) - 64 * 3 * (49 - 9)
    out = small(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_cifar_layout_details():
    net = build("resnet_cifar", depth=20)
    assert (net.conv1.out_channels, net.conv1.stride) == (16, (1, 1))
    assert [net.layer1[0].conv1.out_channels, net.layer2[0].conv1.stride, net.layer3[0].conv1.out_channels] == [
        16,
        (2, 2),
        64,
    ]
    sc = net.layer2[0].downsample
    assert isinstance(sc, ZeroPadShortcut) and n_params(sc) == 0
    x = torch.randn(2, 16, 7, 7)
    y = sc(x)  # odd sizes: same ceil(H/2) as the stride-2 conv
    assert y.shape == (2, 32, 4, 4)
    torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2])
    assert y[:, 16:].abs().sum() == 0


# ---------------------------------------------------------------- BN knobs


# The full knob matrix runs on the small families and on a tiny torchvision-layout ResNet (imagenet stem,
# 1x1 projections): the same code as resnet18/34, at a size 2 CPU cores get through quickly.
TINY = {
    "tiny_resnet": lambda **kw: ResNet((1, 2), (4, 8), shortcut=True, shortcut_type="B", **kw),
    "tiny_plain": lambda **kw: ResNet((1, 2), (4, 8), shortcut=False, shortcut_type="B", **kw),
}


def _all_combos():
    for name in ("lenet", "mlp", *CIFAR, *TINY):
        for bn, placement, impl in itertools.product([True, False], BN_PLACEMENTS, BN_IMPLS):
            if placement == "pre_activation" and name in ("lenet", "mlp"):
                continue  # rejected, tested below
            yield name, bn, placement, impl


def _small_kwargs(name: str) -> dict:
    if name in CIFAR:
        return {"depth": 8}
    if name == "mlp":
        return {"depth": 2, "width": 16}
    return {}


def _check_bn_layers(net, bn, impl):
    norms = [m for m in net.modules() if isinstance(m, NORM_TYPES)]
    if bn:
        assert norms and all(m.momentum == 0.2 and m.eps == 1e-3 for m in norms)
        scratch = all(isinstance(m, (ScratchBatchNorm1d, ScratchBatchNorm2d)) for m in norms)
        assert scratch == (impl == "scratch")
    else:
        assert not norms
    # a layer feeding BN carries no bias; without BN every conv/linear layer has one
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all((m.bias is None) == bn for m in layers[:-1])
    assert layers[-1].bias is not None


def _train_step_and_eval(net, size, channels=3):
    x = torch.randn(3, channels, size, size)
    net.train()
    out = net(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    net.eval()
    with torch.no_grad():
        assert net(x[:1]).shape == (1, 10)


@pytest.mark.parametrize(("name", "bn", "placement", "impl"), list(_all_combos()))
def test_every_knob_builds_and_trains(name, bn, placement, impl):
    torch.manual_seed(0)
    size = 28 if name == "lenet" else 16
    kw = dict(bn=bn, bn_placement=placement, bn_impl=impl, bn_momentum=0.2, bn_eps=1e-3)
    if name in TINY:
        net = TINY[name](in_channels=3, num_classes=10, **kw)
    else:
        net = build(name, image_size=size, **kw, **_small_kwargs(name))
        assert net.input_shape == (3, size, size)
    _check_bn_layers(net, bn, impl)
    _train_step_and_eval(net, size)


@pytest.mark.parametrize(
    ("name", "bn", "placement", "impl"),
    [
        ("resnet18", True, "pre_activation", "scratch"),
        ("plain18", True, "after_activation", "torch"),
        ("resnet34", False, "before_activation", "torch"),
        ("plain34", True, "before_activation", "scratch"),
    ],
)
def test_imagenet_builders_train(name, bn, placement, impl):
    torch.manual_seed(0)
    net = build(name, bn=bn, bn_placement=placement, bn_impl=impl, bn_momentum=0.2, bn_eps=1e-3, stem="imagenet")
    _check_bn_layers(net, bn, impl)
    _train_step_and_eval(net, 32)


@pytest.mark.parametrize("name", ["resnet_cifar", "plain_cifar"])
def test_bn_false_ignores_placement(name):
    nets = [build(name, bn=False, bn_placement=p, **_small_kwargs(name)) for p in BN_PLACEMENTS]
    keys = [list(n.state_dict()) for n in nets]
    assert keys[0] == keys[1] == keys[2]
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    state = nets[0].state_dict()
    outs = []
    for n in nets:
        n.load_state_dict(state)
        outs.append(n.eval()(x))
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(outs[0], outs[2])


def test_placements_order_bn_and_relu():
    """Probe the layer order with hooks: what comes right after the first conv of a block."""
    order = []

    def tag(name):
        return lambda m, i, o: order.append(name)

    for placement, expected in [
        ("before_activation", ["conv1", "bn1", "conv2", "bn2"]),
        ("after_activation", ["conv1", "bn1", "conv2", "bn2"]),
        ("pre_activation", ["bn1", "conv1", "bn2", "conv2"]),
    ]:
        net = build("resnet_cifar", depth=8, bn_placement=placement)
        block = net.layer1[0]
        order.clear()
        hooks = [getattr(block, n).register_forward_hook(tag(n)) for n in ("conv1", "bn1", "conv2", "bn2")]
        net(torch.randn(2, 3, 8, 8))
        for h in hooks:
            h.remove()
        assert order == expected, placement
    # after_activation: BN sees non-negative (post-ReLU) inputs; before_activation: BN sees the raw conv output
    seen = {}
    for placement in ("before_activation", "after_activation"):
        net = build("resnet_cifar", depth=8, bn_placement=placement)
        h = net.layer1[0].bn2.register_forward_hook(lambda m, i, o: seen.__setitem__("min", i[0].min().item()))
        net(torch.randn(2, 3, 8, 8))
        h.remove()
        assert (seen["min"] >= 0) == (placement == "after_activation")


def test_pre_activation_stem_and_head():
    pre = build("resnet_cifar", depth=20, bn_placement="pre_activation")
    post = build("resnet_cifar", depth=20)
    assert isinstance(pre.bn1, nn.Identity) and isinstance(pre.bn_final, nn.BatchNorm2d)
    assert isinstance(post.bn1, nn.BatchNorm2d) and isinstance(post.bn_final, nn.Identity)
    assert isinstance(pre.layer1[0], M.PreActBlock)
    # a pre-activation block normalizes its input: the first block of a stage sees the narrower width
    assert [pre.layer2[0].bn1.num_features, pre.layer2[0].bn2.num_features, pre.bn_final.num_features] == [16, 32, 64]
    # ImageNet pre-activation: projections lose their BN (they read the pre-activated input)
    r = build("resnet18", bn_placement="pre_activation")
    assert len(r.layer2[0].downsample) == 1 and r.layer2[0].shortcut_from_preact
    assert not r.layer1[0].shortcut_from_preact


def test_scratch_and_torch_networks_agree():
    torch.manual_seed(0)
    for placement in BN_PLACEMENTS:
        a = build("resnet_cifar", depth=8, bn_placement=placement, bn_impl="torch")
        b = build("resnet_cifar", depth=8, bn_placement=placement, bn_impl="scratch")
        b.load_state_dict(a.state_dict())
        x = torch.randn(4, 3, 8, 8)
        for training in (True, False):
            a.train(training)
            b.train(training)
            torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)
        for (k, u), v in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6, msg=k)


def test_init():
    net = build("resnet_cifar", depth=8)
    conv = net.layer2[0].conv1
    std = (2.0 / (conv.out_channels * 9)) ** 0.5  # kaiming_normal_, fan_out, ReLU gain
    assert abs(conv.weight.std().item() - std) / std < 0.1
    assert all((m.weight == 1).all() and (m.bias == 0).all() for m in net.modules() if isinstance(m, NORM_TYPES))
    relu_mlp = build("mlp", depth=1, width=512, bn=False)
    std = (2.0 / (3 * 32 * 32)) ** 0.5  # kaiming_normal_, fan_in
    assert abs(relu_mlp.fc1.weight.std().item() - std) / std < 0.05 and (relu_mlp.fc1.bias == 0).all()


@pytest.mark.parametrize(("size", "flat"), [(28, 16 * 4 * 4), (32, 16 * 5 * 5), (16, 16)])
def test_lenet_shapes(size, flat):
    net = build("lenet", in_channels=1, image_size=size)
    assert net.fc1.in_features == flat
    assert net(torch.randn(2, 1, size, size)).shape == (2, 10)
    names = [n for n, _ in net.named_children()]
    assert names[:4] == ["conv1", "bn1", "act1", "pool1"] and isinstance(net.act1, nn.Sigmoid)
    after = build("lenet", in_channels=1, image_size=size, bn_placement="after_activation", activation="relu")
    assert [n for n, _ in after.named_children()][:4] == ["conv1", "act1", "bn1", "pool1"]
    assert isinstance(after.act1, nn.ReLU)


def test_mlp_shapes():
    net = build("mlp", in_channels=1, image_size=28, depth=4, width=32)
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [32, 32, 32, 32, 10]
    assert net.fc1.in_features == 784
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net.modules()) == 4


def test_models_pickle_and_deepcopy():
    net = build("resnet_cifar", depth=8, bn_impl="scratch")
    clone = pickle.loads(pickle.dumps(net))
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(clone.eval()(x), copy.deepcopy(net).eval()(x))


# ---------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("resnet18", {"bn_placement": "foo"},
         "bn_placement='foo' is not one of before_activation, after_activation, pre_activation"),
        ("lenet", {"bn_impl": "cudnn"}, "bn_impl='cudnn' is not one of torch, scratch"),
        ("resnet_cifar", {"depth": 21}, "resnet_cifar depth=21 is not 6n+2 (valid: 8, 14, 20, 32, 44, 56, 110, ...)"),
        ("plain_cifar", {"depth": 2}, "depth=2 is not >= 8 (plain_cifar depth = 6n+2 with n >= 1"),
        ("resnet_cifar", {"depth": None}, "depth=None is not an integer"),
        ("lenet", {"bn_placement": "pre_activation"},
         "bn_placement='pre_activation' is not valid for lenet (no residual blocks); "
         "use one of before_activation, after_activation"),
        ("mlp", {"bn_placement": "pre_activation", "bn": False}, "is not valid for mlp (no residual blocks)"),
        ("lenet", {"activation": "tanh"}, "activation='tanh' is not one of sigmoid, relu"),
        ("lenet", {"image_size": 12}, "image_size=12 is not >= 16 (lenet needs at least 16x16 inputs)"),
        ("mlp", {"depth": 0}, "depth=0 is not >= 1 (mlp depth = number of hidden layers)"),
        ("plain34", {"stem": "cifar"}, "stem='cifar' is not one of imagenet, small"),
        ("resnet34", {"bn": "false"}, "bn='false' is not a bool (true or false)"),
        ("resnet18", {"bn_momentum": 1.5}, "bn_momentum=1.5 is not in [0, 1]"),
        ("resnet18", {"bn_eps": 0}, "bn_eps=0 is not a number > 0"),
        ("resnet18", {"num_classes": 0}, "num_classes=0 is not >= 1"),
        ("mlp", {"in_channels": 2.5}, "in_channels=2.5 is not an integer"),
    ],
)
def test_bad_arguments_raise_one_clear_line(name, kwargs, message, monkeypatch):
    # nothing may be built before the check fails
    monkeypatch.setattr(nn.Conv2d, "__init__", lambda *a, **k: pytest.fail("built a layer before validating"))
    monkeypatch.setattr(nn.Linear, "__init__", lambda *a, **k: pytest.fail("built a layer before validating"))
    with pytest.raises(ValueError) as err:
        build(name, **kwargs)
    text = str(err.value)
    assert message in text and "\n" not in text
    with pytest.raises(ValueError, match="is not"):
        M.validate_model_args(name, **{"in_channels": 3, "num_classes": 10, "image_size": 32, **kwargs})


def test_validate_model_args():
    a = M.validate_model_args("resnet_cifar", in_channels=3, num_classes=10, image_size=32)
    assert a["depth"] == 20 and a["bn_placement"] == "before_activation"
    with pytest.raises(ValueError, match="model='vgg' is not one of lenet, mlp, resnet18"):
        M.validate_model_args("vgg")
    with pytest.raises(ValueError, match="resnet18: got an unexpected keyword argument 'depth'"):
        M.validate_model_args("resnet18", in_channels=3, num_classes=10, image_size=32, depth=18)
    with pytest.raises(ValueError, match="model='vgg' is not one of"):
        M.build_model("vgg")
    assert isinstance(M.build_model("plain_cifar", in_channels=1, num_classes=10, image_size=28), ResNet)
    with pytest.raises(ValueError, match="shortcut_type='C' is not one of A, B"):
        ResNet((1,), (8,), shortcut_type="C")


# ---------------------------------------------------------------- Hydra configs


def _compose(overrides):
    hydra = pytest.importorskip("hydra")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return cfg, hydra.utils.instantiate(cfg.model)  # only the model: paths.output_dir needs a running job


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_hydra_configs_compose_and_instantiate(name):
    cfg, net = _compose([f"model={name}", "data=mnist5k", "bn_impl=scratch", "bn_momentum=0.05"])
    assert cfg.model_name == name
    # plain nets are their residual twin with the shortcuts switched off (model=plain18 is resnet18 shortcut=false)
    assert cfg.model._target_ == f"bnres.models.{residual_twin(name)}"
    assert getattr(net, "shortcut", None) is cfg.shortcut
    x = torch.randn(2, 1, 28, 28)  # mnist5k: 1 channel, 28x28, 10 classes
    assert net(x).shape == (2, 10)
    norms = [m for m in net.modules() if isinstance(m, NORM_TYPES)]
    assert norms and all(isinstance(m, (ScratchBatchNorm1d, ScratchBatchNorm2d)) and m.momentum == 0.05
                         for m in norms)


def test_hydra_depth_and_bn_overrides():
    cfg, net = _compose(["model=resnet_cifar", "depth=32", "data=mnist5k", "bn=false"])
    direct = M.resnet_cifar(in_channels=1, num_classes=10, image_size=28, depth=32, bn=False)
    assert cfg.depth == 32 and n_params(net) == n_params(direct)
    assert not any(isinstance(m, NORM_TYPES) for m in net.modules())
    _, net = _compose(["model=plain_cifar", "depth=32", "bn_placement=after_activation"])
    assert len(net.layer1) == 5 and net.layout == "after_activation"
    _, net = _compose(["model=mlp", "depth=5"])
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 6
    with pytest.raises(Exception, match="depth=21 is not 6n\\+2"):  # Hydra wraps the ValueError
        _compose(["model=resnet_cifar", "depth=21"])
