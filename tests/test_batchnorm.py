"""The from-scratch batch norm against torch's, and the properties BN is supposed to have."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bnres.models import NORM_TYPES, ScratchBatchNorm1d, ScratchBatchNorm2d, make_norm


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: on a shared 2-core box, intra-op threading costs far more than it saves (50x here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

# (scratch class, torch class, input shape): 1-D per feature, 1-D with a length dim, 2-D per channel
CASES = [
    (ScratchBatchNorm1d, nn.BatchNorm1d, (8, 5)),
    (ScratchBatchNorm1d, nn.BatchNorm1d, (6, 5, 7)),
    (ScratchBatchNorm2d, nn.BatchNorm2d, (4, 5, 6, 6)),
]
IDS = ["1d-NC", "1d-NCL", "2d-NCHW"]
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _pair(scratch_cls, torch_cls, c, **kw):
    """A scratch and a torch BN with the same (random) affine parameters."""
    ours, ref = scratch_cls(c, **kw), torch_cls(c, **kw)
    if ref.affine:
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.uniform_(-0.5, 0.5)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def _assert_same_state(ours, ref):
    for (k, a), (k2, b) in zip(ours.state_dict().items(), ref.state_dict().items(), strict=True):
        assert k == k2
        torch.testing.assert_close(a, b, **TOL, msg=k)


@pytest.mark.parametrize("momentum", [0.1, 0.7, None])
@pytest.mark.parametrize(("scratch_cls", "torch_cls", "shape"), CASES, ids=IDS)
def test_matches_torch_train_then_eval(scratch_cls, torch_cls, shape, momentum):
    torch.manual_seed(0)
    ours, ref = _pair(scratch_cls, torch_cls, shape[1], momentum=momentum, eps=1e-3)
    for step in range(4):  # several steps: running stats must track torch's exactly
        x = (torch.randn(shape) * (step + 1) + step).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        y, y2 = ours(x), ref(x2)
        torch.testing.assert_close(y, y2, **TOL)
        g = torch.randn_like(y)
        y.backward(g)
        y2.backward(g)
        torch.testing.assert_close(x.grad, x2.grad, **TOL)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, **TOL)
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, **TOL)
        _assert_same_state(ours, ref)
        ours.zero_grad()
        ref.zero_grad()
    assert int(ours.num_batches_tracked) == 4

    ours.eval()
    ref.eval()
    x = torch.randn(shape, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y, y2 = ours(x), ref(x2)
    torch.testing.assert_close(y, y2, **TOL)
    y.sum().backward()
    y2.sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, **TOL)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, **TOL)
    _assert_same_state(ours, ref)  # eval leaves the running stats alone
    assert int(ours.num_batches_tracked) == 4


@pytest.mark.parametrize(("affine", "track"), [(False, True), (True, False), (False, False)])
def test_matches_torch_without_affine_or_tracking(affine, track):
    torch.manual_seed(1)
    ours, ref = _pair(ScratchBatchNorm2d, nn.BatchNorm2d, 3, affine=affine, track_running_stats=track)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for mode in (True, False):
        ours.train(mode)
        ref.train(mode)
        x = torch.randn(4, 3, 5, 5) + 2
        torch.testing.assert_close(ours(x), ref(x), **TOL)
    _assert_same_state(ours, ref)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 3, 2)], ids=["1d", "2d"])
def test_gradcheck_float64(shape, training):
    torch.manual_seed(2)
    cls = ScratchBatchNorm1d if len(shape) == 2 else ScratchBatchNorm2d
    bn = cls(shape[1]).double().train(training)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = bn.weight.detach().clone().requires_grad_()
    b = bn.bias.detach().clone().requires_grad_()

    def f(x, w, b):  # gamma and beta as inputs, so their gradients are checked too
        return torch.func.functional_call(bn, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradcheck(f, (x, w, b))


def test_state_dict_cross_loading():
    torch.manual_seed(3)
    ref = nn.BatchNorm2d(4)
    ref(torch.randn(3, 4, 2, 2) * 3 + 1)  # move the running stats off their init
    with torch.no_grad():
        ref.weight.mul_(2.0)
        ref.bias.add_(0.3)
    ours = ScratchBatchNorm2d(4)
    ours.load_state_dict(ref.state_dict())  # strict: same names, same shapes
    _assert_same_state(ours, ref)
    back = nn.BatchNorm2d(4)
    back.load_state_dict(ours.state_dict())
    _assert_same_state(back, ref)
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(ours.eval()(x), ref.eval()(x), **TOL)


@pytest.mark.parametrize("impl", ["torch", "scratch"])
@pytest.mark.parametrize("shape", [(16, 4), (4, 3, 5, 5)], ids=["1d", "2d"])
def test_bn_can_undo_itself(impl, shape):
    """gamma = sqrt(var_B + eps), beta = mean_B make the (train-mode) layer the identity on that batch."""
    torch.manual_seed(4)
    bn = make_norm(shape[1], len(shape) // 2, impl, eps=1e-5)
    x = torch.randn(shape) * 3 + 1.5
    dims = [0, *range(2, x.dim())]
    var, mean = torch.var_mean(x, dim=dims, correction=0)
    with torch.no_grad():
        bn.weight.copy_(torch.sqrt(var + bn.eps))
        bn.bias.copy_(mean)
    torch.testing.assert_close(bn.train()(x), x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["torch", "scratch"])
def test_train_and_eval_differ_and_eval_uses_running_stats(impl):
    torch.manual_seed(5)
    bn = make_norm(3, 2, impl, momentum=0.5, eps=1e-5)
    x = torch.randn(4, 3, 4, 4) * 2 + 3
    y_train = bn.train()(x)
    # training output is standardized per channel with the batch statistics
    torch.testing.assert_close(y_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    y_eval = bn.eval()(x)
    assert not torch.allclose(y_train, y_eval, atol=1e-2)
    rm, rv = bn.running_mean.view(1, -1, 1, 1), bn.running_var.view(1, -1, 1, 1)
    torch.testing.assert_close(y_eval, (x - rm) / torch.sqrt(rv + bn.eps), **TOL)
    # one update from (0, 1) with momentum 0.5, unbiased variance
    dims = (0, 2, 3)
    torch.testing.assert_close(bn.running_mean, 0.5 * x.mean(dim=dims), **TOL)
    torch.testing.assert_close(bn.running_var, 0.5 + 0.5 * x.var(dim=dims, correction=1), **TOL)


def test_half_precision_input_is_normalized_in_float32():
    torch.manual_seed(6)
    bn = ScratchBatchNorm2d(3)
    x = torch.randn(4, 3, 4, 4) * 4 + 100  # a large mean: bf16 stats would be visibly off
    y = bn(x.bfloat16())
    assert y.dtype == torch.bfloat16 and bn.running_mean.dtype == torch.float32
    torch.testing.assert_close(y.float(), ScratchBatchNorm2d(3)(x.bfloat16().float()), atol=2e-2, rtol=1e-2)


def test_bad_inputs_raise_clearly():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ScratchBatchNorm1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"expects \(N, C, H, W\) input, got a 2-D"):
        ScratchBatchNorm2d(3)(torch.randn(4, 3))
    with pytest.raises(ValueError, match="got 4 features"):
        ScratchBatchNorm1d(3)(torch.randn(5, 4))
    with pytest.raises(ValueError, match="bn_impl='cudnn' is not one of torch, scratch"):
        make_norm(3, 2, "cudnn")
    with pytest.raises(ValueError, match="dim=3 is not one of 1, 2"):
        make_norm(3, 3, "torch")


def test_make_norm_types():
    assert type(make_norm(4, 1, "torch", 0.2, 1e-3)) is nn.BatchNorm1d
    assert type(make_norm(4, 2, "torch")) is nn.BatchNorm2d
    s = make_norm(4, 1, "scratch", 0.2, 1e-3)
    assert type(s) is ScratchBatchNorm1d and s.momentum == 0.2 and s.eps == 1e-3
    assert type(make_norm(4, 2, "scratch")) is ScratchBatchNorm2d
    assert all(isinstance(make_norm(4, d, i), NORM_TYPES) for d in (1, 2) for i in ("torch", "scratch"))
