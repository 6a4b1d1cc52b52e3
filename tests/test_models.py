"""Every registered model through the same checks (after MONAI's test_unet.py and smp's tester).

Parameterized over ``list_models()``, so a new model file is covered without editing this one:
output shape per output (a list for deep-supervision models, final output last), finite outputs
and gradients in train and eval mode, other class/channel counts, and the parameter count against
the reference recorded in its ModelInfo (3 in, 1 class) within 3%.

A model whose reference implementation has parameters that never receive a gradient may list
their names in ``ModelInfo(extra={"unused_params": [...]})``; an entry ending in "." names every
parameter of that module.
"""

from __future__ import annotations

import copy

import pytest
import torch

from ubench.errors import UbenchError
from ubench.models import create_model, list_models, model_info, model_source_file
from ubench.models.pretrained import in_modules

MODELS = list_models()
PARAM_TOLERANCE = 0.03
# Models whose quick forward+backward takes over ~5 s on 2 CPU cores (measured: the fixed-256
# hybrids take 8-17 s a pass, the VMamba-based U-Nets 6-9 s). Their forward+backward runs under
# `-m slow`; the default suite still builds them (parameter count, seeding, size checks) and runs
# their eval-mode forward with 1 input channel and 2 classes (the 3-in/4-class case is slow too).
HEAVY = {"uctransnet", "da_transunet", "transunet", "h2former", "unetr", "mamba_unet", "swin_umamba", "vmunet",
         "mca_unet", "perspective_unet", "fcbformer", "transresunet", "merit", "mslau_net", "mt_unet",
         "cenet_pvt", "ds_transunet", "convformer", "daeformer", "levit_unet", "transnorm", "cswin_unet",
         "d_trattunet", "scunet_plus_plus", "cfm_unet", "ac_mambaseg", "swin_umambad"}


def _quick_params(name: str) -> list:
    """(name, train) cases; heavy models' cases carry the slow mark."""
    marks = [pytest.mark.slow] if name in HEAVY else []
    return [pytest.param(name, t, id=f"{name}-{'train' if t else 'eval'}", marks=marks) for t in (True, False)]


OURS = ["attention_unet", "unet", "unetpp"]  # the models this file was written with


def _as_list(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _build(name: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, **kw)


_DEFAULT_BUILD: dict[str, torch.nn.Module] = {}


def _default(name: str) -> torch.nn.Module:
    """``_build(name)``, made once per model and kept while that model's tests run (conftest runs
    this file model by model): building a 100M-parameter model takes seconds, a copy a fraction.
    Read-only users take it as is; a test that trains or changes it takes ``copy.deepcopy``."""
    if name not in _DEFAULT_BUILD:
        _DEFAULT_BUILD.clear()
        _DEFAULT_BUILD[name] = _build(name)
    return _DEFAULT_BUILD[name]


def _check_outputs(name: str, out, shape: tuple) -> list[torch.Tensor]:
    outs = _as_list(out)
    if model_info(name).deep_supervision:
        assert isinstance(out, (list, tuple)) and len(outs) > 1, "deep supervision: a list of logits"
    else:
        assert isinstance(out, torch.Tensor), f"{name} returned {type(out).__name__}, expected a Tensor"
    for k, o in enumerate(outs):
        assert tuple(o.shape) == shape, f"{name} output {k}: {tuple(o.shape)} != {shape}"
        assert torch.isfinite(o).all(), f"{name} output {k} has non-finite values"
    return outs


def _forward_backward(name: str, model: torch.nn.Module, size: int, train: bool) -> None:
    model.train(train)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    outs = _check_outputs(name, model(x), (2, 1, size, size))
    sum(o.square().mean() for o in outs).backward()
    unused = model_info(name).extra.get("unused_params", ())  # names, or "module." for all under it
    missing = [
        n for n, p in model.named_parameters() if p.requires_grad and p.grad is None and not in_modules(n, unused)
    ]
    assert not missing, f"{name}: parameters without gradient: {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradients in {bad[:5]}"


@pytest.fixture(autouse=True, scope="module")
def _threads():
    """UBENCH_TEST_THREADS=1 when the cores are shared with other jobs (2 threads spinning against
    them turn a 0.3 s pass into 9 s); by default every core, as on CI."""
    import os

    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("UBENCH_TEST_THREADS", before)))
    yield
    torch.set_num_threads(before)


def test_zoo_is_not_empty():
    assert set(OURS) <= set(MODELS)


def _quick_size(name: str) -> int:
    """64 for models that take any multiple of their stride; their fixed size otherwise."""
    return model_info(name).smallest_size(64)


@pytest.mark.parametrize("name,train", [case for name in MODELS for case in _quick_params(name)])
def test_forward_backward_64(name, train):
    _forward_backward(name, copy.deepcopy(_default(name)), _quick_size(name), train)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_256(name):
    """The protocol's input size (U-Bench trains and tests at 256x256); 7-13 s a model here."""
    info = model_info(name)
    size = 256 if info.accepts(256) else info.ref_input_size
    assert info.accepts(size)
    _forward_backward(name, _build(name), size, train=True)


@pytest.mark.parametrize("name", MODELS)
def test_param_count_matches_reference(name):
    info = model_info(name)
    assert info.ref_params_m, f"{name}: ModelInfo.ref_params_m is not set"
    assert info.ref_source, f"{name}: ModelInfo.ref_source is not set"
    ours = sum(p.numel() for p in _default(name).parameters()) / 1e6
    rel = abs(ours - info.ref_params_m) / info.ref_params_m
    assert rel <= PARAM_TOLERANCE, f"{name}: {ours:.3f}M vs reference {info.ref_params_m:.3f}M ({rel:.1%})"


def _channel_class_cases() -> list:
    """(name, in_channels, num_classes, hw) per model: 1 in / 2 classes for every model, and 3 in /
    4 classes on a non-square input (slow for the heavy models: at their fixed size it is the same
    square input again, only the class count differs)."""
    cases = []
    for name in MODELS:
        for in_ch, classes, hw, case in [(3, 4, (64, 96), "3in-4cls-64x96"), (1, 2, (64, 64), "1in-2cls")]:
            marks = [pytest.mark.slow] if name in HEAVY and in_ch == 3 else []
            cases.append(pytest.param(name, in_ch, classes, hw, id=f"{name}-{case}", marks=marks))
    return cases


@pytest.mark.parametrize("name,in_channels,num_classes,hw", _channel_class_cases())
def test_other_channels_and_classes(name, in_channels, num_classes, hw):
    info = model_info(name)
    if info.input_sizes is not None:  # fixed-size models: their own square size
        hw = (_quick_size(name),) * 2
    elif not all(info.accepts(v) for v in hw):  # a coarser stride: its smallest size (and one more step)
        s = _quick_size(name)
        hw = (s, s + info.size_multiple) if hw[0] != hw[1] else (s, s)
    model = _build(name, num_classes=num_classes, in_channels=in_channels).eval()
    with torch.no_grad():
        out = model(torch.randn(1, in_channels, *hw))
    _check_outputs(name, out, (1, num_classes, *hw))


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_weights(name):
    a, b = _default(name).state_dict(), _build(name).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), f"{name}: initialisation is not seeded by torch"


@pytest.mark.parametrize("name", MODELS)
def test_undeclared_input_size_is_refused_clearly(name):
    """A size the model does not declare is refused before the network runs, with a ValueError
    that names the size (the registry's input check), never a torch shape error."""
    bad = 65  # odd: no total stride divides it, no fixed-size model takes it
    assert not model_info(name).accepts(bad)
    model = _default(name).eval()  # refused before the network runs: nothing in it changes
    with pytest.raises(ValueError, match=f"{bad}x{bad}"), torch.no_grad():
        model(torch.randn(1, 3, bad, bad))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"), torch.no_grad():
        model(torch.randn(3, 64, 64))


@pytest.mark.parametrize("name", MODELS)
def test_factories_hold_only_architecture(name):
    """Every factory takes exactly (num_classes, in_channels): option and size checks live in the
    registry, so no model file repeats them (nor its own name as a string)."""
    import inspect

    from ubench.models.registry import _FACTORIES

    assert list(inspect.signature(_FACTORIES[name]).parameters) == ["num_classes", "in_channels"]
    src = model_source_file(name).read_text()
    assert "reject_unknown_kwargs" not in src and "check_spatial_size" not in src
    assert "UbenchError" not in src  # model code raises ValueError/TypeError; the app wraps them


@pytest.mark.parametrize("name", OURS)
def test_our_models_reject_non_multiples(name):
    model = _build(name).eval()
    with pytest.raises(ValueError, match="divisible"), torch.no_grad():
        model(torch.randn(1, 3, 72, 72))


@pytest.mark.parametrize("name", MODELS)
def test_unknown_options_are_refused_before_building(name):
    with pytest.raises(UbenchError, match="deep_supervison"):
        create_model(name, deep_supervison=True)
