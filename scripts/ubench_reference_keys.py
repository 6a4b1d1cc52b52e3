#!/usr/bin/env python3
"""U-Bench's state_dict keys per model, and whether ubench's model takes U-Bench's weights (issue 19).

For every registered ubench model with a ``ModelInfo.ubench_name``, this script builds U-Bench's
model from a checkout of U-Bench's code the way its ``main.py`` does, writes the model's state_dict
keys, shapes and dtypes to ``tests/data/ubench_keys/<UBenchName>.json`` (a small fixture: no
weights), then builds ubench's model and checks with ``ubench_weights.fit_state_dict`` whether
U-Bench's state_dict fits it unchanged. Where it fits and U-Bench's forward runs here, both models
get the same weights and the same seeded input and their outputs are compared. Where it does not
fit, the key map shipped in ``--keymaps`` (if any) is checked first; where it does not prove and
the two state_dicts hold tensors of the same shapes, U-Bench's tensors are paired with
ubench's keys (by state_dict position when the shapes agree in order; otherwise, or if that pairing
does not give equal outputs, by the order in which modules first run in forward, each U-Bench
tensor taking the first unpaired ubench key of its shape; then by groups: the tensors of one
block (a leaf module's parent) paired with the ubench block of the same shapes, in the order in
which their tensors are first passed to a torch op, so that a norm stays with its conv when the
two models run same-shaped blocks in another order) and the outputs are compared the same
way. Where ubench stores U-Bench's tensors otherwise, the pairing sees ubench's tensor as U-Bench's
pieces (``KEY#0``, ``KEY#1``...): separate query, key and value stacked on dim 0 as one ``qkv``, or
a 1x1 convolution's kernel viewed as a linear weight (``stack_plan``, by shapes, else
``stack_plan_by_position``, walking both state_dicts in order); U-Bench's constant buffers
(index tables, masks) of shapes ubench holds none of may be set aside, since ubench's module
computes them (they keep their built values, never perturbed). Equal outputs then prove the map's
``fused``/``reshaped``/``buffers`` entries as well. Equal outputs show that the map carries
U-Bench's weights over; unequal ones do not tell a wrong pairing from a different computation.
A pairing written by module name (a ``--keymaps`` file, checked first through the import's own
``apply_keymap``) is proven the same way. Before any comparison every floating
tensor gets distinct deterministic values (a fresh model's norms are ones and zeros and would hide
a swapped pair). Dropout that is still in training mode in U-Bench's eval forward (a module built
inside ``forward``, as in CA_Net) is made the identity and counted: U-Bench's eval output is
random there. A float32 difference above 1e-5 but at most ROUNDING_F32 is rechecked in float64
with the same pairing; agreement within F64_TOL there makes the map proven, the float32 gap being
rounding (both numbers go into the map's notes); in that recheck ``Tensor.float()`` leaves float64
tensors as they are (``KeepFloat64``: mamba_ssm's reference scan and U-Bench's SS2D cast to float32 on
purpose), and ``--skip-asserts`` runs the children under ``python -O`` where U-Bench asserts a
float32 dtype (AC_MambaSeg). U-Bench's tensors held only by modules
that never ran in its forward are counted (a lower bound on unused weights). A markdown table of
the results is printed and written to ``--report`` (all results as JSON beside it; ``--resume``
keeps those and runs the rest). Run by hand; U-Bench's code is only imported from the scratch
paths given, never copied:

    mkdir -p /tmp/ubref/src && git --git-dir=U-Bench.git archive HEAD -- main.py models utils | tar -x -C /tmp/ubref/src
    pip install --no-deps --target /tmp/ubref/site timm==0.9.2 ml_collections einops yacs thop wget \\
        pytorch-wavelets PyWavelets fvcore iopath opencv-python-headless seaborn torchsummary \\
        transformers==4.34.1 tokenizers==0.14.1 huggingface-hub==0.17.3 "setuptools<70" ...  # U-Bench's imports
    pip install --no-deps --target /tmp/ubref/tv torchvision==0.29.1      # with --torchvision-op-schemas
    pip install --no-deps --target /tmp/ubref/monai12 monai==1.2.0        # --model-site SwinUNETR=...
    # /tmp/ubref/stubs/mamba_ssm: the Python files of state-spaces/mamba v2.2.2 (modules/mamba_simple.py,
    # ops/selective_scan_interface.py without its CUDA import), selecting selective_scan_ref when
    # UBREF_MAMBA_SCAN_REF=1 (--mamba-scan-ref)
    python scripts/ubench_reference_keys.py --ubench-src /tmp/ubref/src --commit <sha> \\
        --site /tmp/ubref/site --site /tmp/ubref/tv --site /tmp/ubref/stubs --torchvision-op-schemas \\
        --py310-dataclass-defaults --mamba-scan-ref --skip-asserts \\
        --model-site SwinUNETR=/tmp/ubref/monai12 --keymaps ubench/keymaps [--models unet pranet]

BATFormer needs torchvision's compiled nms/roi_align, which load only beside torch 2.14.1: run it
from a venv with ``pip install torch==2.14.1 torchvision==0.29.1`` (this venv's site-packages
appended through a .pth file), without ``/tmp/ubref/tv`` and ``--torchvision-op-schemas``.

How U-Bench builds a model (``main.py`` -> ``models.build_model(args, input_channel=...,
num_classes=...)``), and so how this script builds it: ``build_model`` looks the name up in
``models/model_id.json`` (setting ``do_deeps`` from its ``deeps_supervision``; the RWKV models
imported lazily skip that) and then always calls ``model_class(input_channel=..., num_classes=...)``
(its signature filter never applies, since ``'self'`` is never among the keyword arguments), so
``--img_size`` never reaches the constructor; it is only the size of the input fed here. Which
module each name comes from is read from the ``from .X import Y as Name`` lines of
``models/__init__.py``; only that model's module is imported (importing the whole package would
fail for all models where one module does not import here).

What this machine cannot do is stood in for, and each model's fixture says what was:

* downloads (no network): ``torch.hub.load_state_dict_from_url``/``model_zoo.load_url``, timm's
  pretrained loading and ``torch.load`` of a missing file return an empty stand-in, and a
  ``load_state_dict`` of nothing and ``tensor[...] = <stand-in>`` are skipped; the URLs and paths
  are listed under
  ``config.pretrained_not_loaded`` (the keys and shapes do not depend on them);
* ``.cuda()`` on a tensor or module (some models call it in ``__init__`` or ``forward``): the
  object stays on the CPU; counted under ``config.cuda_calls_in_init``;
* a factory that builds the model and then fails loading pretrained weights in a way the stand-ins
  above do not cover (e.g. ``np.load`` of a missing ``.npz``): the model it had built is taken from
  the factory's frame, and the error is recorded under ``config.pretrained_not_loaded``;
* CUDA extensions compiled at import (``torch.utils.cpp_extension.load``, e.g. the RWKV kernels):
  a placeholder that raises when called, listed under ``config.cuda_extensions_not_built``; such a
  model builds, but its forward fails here and is reported as not run;
* ``--py310-dataclass-defaults``: Python 3.11 refuses a dataclass instance as a dataclass field
  default (3.10 did not); with the flag, a model module that fails to import for that reason is
  imported again with dataclasses given a hash, as under 3.10 (U-Bench's vendored timm copies);
  recorded under ``config.shims`` where it was needed;
* ``--model-site NAME=DIR``: DIR goes first on sys.path while U-Bench's model NAME is imported and
  built, and its modules are dropped again before ubench's model is built (e.g. U-Bench's pinned
  monai 1.2.0 for SwinUNETR, whose ``img_size`` argument later MONAI releases refuse); recorded
  under ``config.extra_site``;
* ``--torchvision-op-schemas``: declares the ``torchvision::nms``/``qnms`` operator schemas before
  torchvision is imported, for a torchvision whose compiled ops do not load beside this torch (its
  Python models then import; its ``ops`` do not run); recorded where torchvision was imported;
* ``--mamba-scan-ref`` (forward only; fixtures unchanged): sets ``UBREF_MAMBA_SCAN_REF=1`` for a
  CPU stand-in of ``mamba_ssm`` that honours it, whose ``selective_scan_fn`` then runs mamba_ssm's
  own pure-torch ``selective_scan_ref`` instead of the CUDA kernel; the results say where it ran.

Output comparison: U-Bench's output when it is a list/tuple is taken as ``main.py`` does with
``do_deeps`` (the last element); ubench's through ``ubench.runtime.final_output`` (the last
element). The relative difference is ``max|a - b| / max|b|`` with ``b`` U-Bench's output.
Each model runs in a child process with a time limit (``--timeout``), one thread.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "tests" / "data" / "ubench_keys"
REPORT = Path("/tmp/ubench_keys_report.md")
REPO = "FengheTan9/U-Bench"
FIRST = 3  # keys named per category in the table
REL_TOL = 1e-5
# a float32 difference up to this is rechecked in float64: a pairing whose float64 outputs agree
# within F64_TOL computes the same, and the float32 gap is rounding (e.g. a fused attention kernel)
ROUNDING_F32, F64_TOL = 1e-4, 1e-10
RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")  # buffers a norm learns


# ---------------------------------------------------------------- U-Bench's model table (parsed)

def ubench_model_table(src: Path) -> dict[str, dict]:
    """{U-Bench model name: {"module", "attr", "lazy"}} from models/__init__.py's relative imports.

    ``lazy``: imported inside a function (``load_model_lazily``), which ``build_model`` calls
    before it reads model_id.json."""
    tree = ast.parse((src / "models" / "__init__.py").read_text())
    eager = {id(n) for n in tree.body if isinstance(n, ast.ImportFrom)}
    table = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                name = alias.asname or alias.name
                table[name] = {"module": "models." + node.module, "attr": alias.name,
                               "lazy": id(node) not in eager}
    return table


def model_ids(src: Path) -> dict[str, dict]:
    return {m["modelname"]: m for m in json.loads((src / "models" / "model_id.json").read_text())}


# ---------------------------------------------------------------- stand-ins (child process only)

class NoWeights(dict):
    """An empty checkpoint standing in for one that could not be downloaded or read here: empty
    when iterated, itself again for any key (so ``ckpt["model"]`` etc. still work)."""

    def __getitem__(self, key):
        return NoWeights()

    def get(self, key, default=None):
        return NoWeights()

    def pop(self, key, *default):
        return NoWeights()


class MissingExtension:
    """Placeholder for a CUDA extension that ``cpp_extension.load`` would compile: any use raises."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)

        def unavailable(*args, **kwargs):
            raise RuntimeError(f"CUDA extension {self._name!r} was not built here (needs nvcc and a GPU)")

        return unavailable


class Standins:
    """Installs the stand-ins described in the module docstring and records what they replaced."""

    def __init__(self):
        self.not_loaded: list[str] = []
        self.extensions: list[str] = []
        self.cuda_calls = 0
        self.active = False

    def install(self, torchvision_schemas: bool):
        import torch
        import torch.hub
        import torch.utils.cpp_extension
        import torch.utils.model_zoo

        if torchvision_schemas:
            self._torchvision_lib = torch.library.Library("torchvision", "DEF")
            self._torchvision_lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            self._torchvision_lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

        def from_url(url, *args, **kwargs):
            self.not_loaded.append(str(url))
            return NoWeights()

        torch.hub.load_state_dict_from_url = from_url
        torch.utils.model_zoo.load_url = from_url

        real_load = torch.load

        def load(f, *args, **kwargs):
            if isinstance(f, (str, os.PathLike)) and not os.path.exists(f) and self.active:
                self.not_loaded.append(str(f))
                return NoWeights()
            return real_load(f, *args, **kwargs)

        torch.load = load

        def compile_extension(name, *args, **kwargs):
            self.extensions.append(str(name))
            return MissingExtension(str(name))

        torch.utils.cpp_extension.load = compile_extension

        real_load_state_dict = torch.nn.Module.load_state_dict
        standins = self

        def load_state_dict(module, state_dict, *args, **kwargs):
            if standins.active and (isinstance(state_dict, NoWeights) or len(state_dict) == 0):
                return torch.nn.modules.module._IncompatibleKeys([], [])
            return real_load_state_dict(module, state_dict, *args, **kwargs)

        torch.nn.Module.load_state_dict = load_state_dict

        real_setitem = torch.Tensor.__setitem__

        def setitem(tensor, index, value):
            if isinstance(value, NoWeights):  # tensor[...] = checkpoint[key] of a checkpoint not loaded
                return None
            return real_setitem(tensor, index, value)

        torch.Tensor.__setitem__ = setitem

        def on_cpu(obj, *args, **kwargs):  # no GPU here: .cuda() keeps a tensor or module on the CPU
            standins.cuda_calls += 1
            return obj

        torch.Tensor.cuda = on_cpu
        torch.nn.Module.cuda = on_cpu

    def patch_timm(self):
        """timm's pretrained loading (hub or URL) skipped, where the model's modules imported timm."""
        if "timm" not in sys.modules:
            return
        try:  # U-Bench's pinned timm 0.9 keeps it in timm.models._builder
            import timm.models._builder as builder

            def no_pretrained(model, pretrained_cfg=None, *args, **kwargs):
                cfg = pretrained_cfg or getattr(model, "pretrained_cfg", None) or {}
                self.not_loaded.append("timm:" + str(cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("architecture")
                                                    or type(model).__name__))

            builder.load_pretrained = no_pretrained
        except ImportError:
            pass


class Py310DataclassDefaults:
    """While active, classes made by dataclasses.dataclass get object's hash if they have none,
    so that a dataclass instance is accepted as another dataclass field's default (Python 3.10)."""

    def __enter__(self):
        import dataclasses

        self._real = dataclasses._process_class

        def process(cls, *args, **kwargs):
            made = self._real(cls, *args, **kwargs)
            if made.__hash__ is None:
                made.__hash__ = object.__hash__
            return made

        dataclasses._process_class = process
        return self

    def __exit__(self, *exc):
        import dataclasses

        dataclasses._process_class = self._real
        return False


# ---------------------------------------------------------------- one model (child process)

def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)


def _tied(state) -> list[list[str]]:
    first: dict[int, str] = {}
    pairs = []
    for key, t in state.items():
        if t.numel() == 0:
            continue
        ptr = t.untyped_storage().data_ptr()
        if ptr in first:
            pairs.append([first[ptr], key])
        else:
            first[ptr] = key
    return pairs


def _final(out):
    """(tensor, how) of a model output: the last element of a list/tuple (main.py with do_deeps)."""
    if isinstance(out, (list, tuple)):
        return out[-1], f"element -1 of {len(out)}"
    if isinstance(out, dict):
        raise TypeError(f"output is a dict ({sorted(out)})")
    return out, "the tensor"


def write_fixture(path: Path, doc: dict, keys: list, tied: list) -> None:
    """JSON with one line per key (stable: state_dict order, no timestamps)."""
    lines = ["{"]
    for field, value in doc.items():
        lines.append(f" {json.dumps(field)}: {json.dumps(value, sort_keys=False)},")
    lines.append(' "keys": [')
    lines.append(",\n".join("  " + json.dumps(k) for k in keys))
    lines.append(" ],")
    lines.append(' "tied": [')
    lines.append(",\n".join("  " + json.dumps(p) for p in tied))
    lines.append(" ]")
    lines.append("}")
    text = "\n".join(line for line in lines if line != "") + "\n"
    json.loads(text)  # well-formed
    path.write_text(text)


def run_one(name: str, opts, result_path: Path) -> None:
    """Build U-Bench's and ubench's model ``name``, write its fixture, compare; write results as
    they come to ``result_path`` (so a timed-out child still leaves what it had)."""
    import importlib
    import inspect
    import types

    res: dict = {"name": name}

    def save():
        result_path.write_text(json.dumps(res))

    src = Path(opts.ubench_src).resolve()
    standins = Standins()
    for p in reversed([str(src)] + [str(Path(s).resolve()) for s in opts.site]):
        sys.path.insert(0, p)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    standins.install(opts.torchvision_op_schemas)

    from ubench.errors import UbenchError
    from ubench.models import create_model, model_info
    from ubench.runtime import final_output
    from ubench.ubench_weights import fit_state_dict

    info = model_info(name)
    uname = info.ubench_name
    size = info.ref_input_size
    res.update(ubench_name=uname, size=size)
    table = ubench_model_table(src)
    ids = model_ids(src)
    save()

    # ---- U-Bench's model, as build_model makes it
    entry = table.get(uname)
    if entry is None:
        res["build_error"] = f"{uname} is not imported in U-Bench's models/__init__.py"
        save()
        return
    if not entry["lazy"] and uname not in ids:
        res["build_error"] = f"{uname} is not in models/model_id.json (build_model exits)"
        save()
        return
    do_deeps = bool(ids[uname].get("deeps_supervision", 0)) if not entry["lazy"] else False
    shims = []
    os.chdir(src)  # build_model and some models read paths relative to U-Bench's checkout
    if "models" not in sys.modules:  # the package without its __init__ (which imports every model)
        pkg = types.ModuleType("models")
        pkg.__path__ = [str(src / "models")]
        sys.modules["models"] = pkg
    extra = [d for spec in opts.model_site for n, _, d in [spec.partition("=")] if n == uname]
    for d in extra:
        sys.path.insert(0, str(Path(d).resolve()))
    standins.active = True
    t0 = time.time()
    theirs = None
    try:
        try:
            module = importlib.import_module(entry["module"])
        except ValueError as exc:
            if not (opts.py310_dataclass_defaults and "mutable default" in str(exc)):
                raise
            for mod in [m for m in sys.modules if m.startswith("models.")]:
                del sys.modules[mod]
            with Py310DataclassDefaults():
                module = importlib.import_module(entry["module"])
            shims.append("py310-dataclass-defaults")
        factory = getattr(module, entry["attr"])
        standins.patch_timm()
        try:
            sig = inspect.signature(factory)
            defaults = {k: _plain(p.default) for k, p in sig.parameters.items()
                        if k not in ("self", "input_channel", "num_classes") and p.default is not inspect.Parameter.empty}
        except (TypeError, ValueError):
            defaults = {}
        torch.manual_seed(0)
        try:
            theirs = factory(input_channel=3, num_classes=1)
        except Exception as exc:  # noqa: BLE001
            theirs = _built_before(exc, factory)
            if theirs is None:
                raise
            standins.not_loaded.append(f"factory failed after building the model: {type(exc).__name__}: "
                                       f"{str(exc).strip()[:200]}")
    except BaseException as exc:  # noqa: BLE001 - any failure of third-party code is a result
        standins.active = False
        res["build_error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        res["build_trace"] = traceback.format_exc()[-3000:]
        res["pretrained_not_loaded"] = standins.not_loaded
        res["cuda_extensions_not_built"] = standins.extensions
        save()
        return
    standins.active = False
    cuda_calls_in_init = standins.cuda_calls
    if opts.torchvision_op_schemas and "torchvision" in sys.modules:
        shims.append("torchvision-op-schemas")
    extra_site = []
    for d in extra:  # U-Bench's pinned package versions for this model only: gone before ubench's build
        d = str(Path(d).resolve())
        sys.path.remove(d)
        extra_site += sorted(x.name[:-len(".dist-info")] for x in Path(d).glob("*.dist-info"))
        for mod in [m for m, v in sys.modules.items() if str(getattr(v, "__file__", "") or "").startswith(d)]:
            del sys.modules[mod]
    theirs.eval()
    res["build_s"] = round(time.time() - t0, 1)
    state = theirs.state_dict()
    try:
        cls_file = str(Path(inspect.getsourcefile(type(theirs))).resolve().relative_to(src))
    except (TypeError, ValueError):  # a class from a third-party package (e.g. timm)
        cls_file = type(theirs).__module__
    factory_file = str(Path(inspect.getsourcefile(module)).resolve().relative_to(src))
    keys = [[k, list(t.shape), str(t.dtype).replace("torch.", "")] for k, t in state.items()]
    tied = _tied(state)
    config = {"model": uname, "img_size": size, "num_classes": 1, "input_channel": 3, "do_deeps": do_deeps,
              "call": f"{entry['module']}.{entry['attr']}(input_channel=3, num_classes=1)",
              "factory_defaults": defaults, "model_class": f"{type(theirs).__module__}.{type(theirs).__name__}",
              "pretrained_not_loaded": sorted(set(standins.not_loaded)),
              "cuda_extensions_not_built": sorted(set(standins.extensions)), "cuda_calls_in_init": cuda_calls_in_init,
              "extra_site": extra_site, "shims": shims}
    doc = {"ubench_model": uname, "ubench_registry_name": name,
           "source": f"{REPO}@{opts.commit} {cls_file}" + (f" (built by {factory_file})" if factory_file != cls_file else ""),
           "config": config,
           "num_params": sum(p.numel() for p in theirs.parameters()),
           "num_keys": len(keys)}
    out_dir = Path(opts.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_fixture(out_dir / f"{uname}.json", doc, keys, tied)
    res.update(built=True, n_theirs=len(keys), tied=len(tied), do_deeps=do_deeps, config=config, source=doc["source"],
               fixture=str(out_dir / f"{uname}.json"))
    save()

    # ---- ubench's model: does U-Bench's state_dict fit it unchanged?
    torch.manual_seed(0)
    ours = create_model(name, num_classes=1, in_channels=3).eval()
    target = ours.state_dict()
    res["n_ours"] = len(target)
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    shaped = [f"{k} {list(state[k].shape)} vs {list(target[k].shape)}" for k in target
              if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    ord_theirs = [tuple(t.shape) for t in state.values()]
    ord_ours = [tuple(t.shape) for t in target.values()]
    res.update(missing=len(missing), unexpected=len(unexpected), misshaped=len(shaped),
               first_missing=missing[:FIRST], first_unexpected=unexpected[:FIRST], first_misshaped=shaped[:FIRST],
               same_shapes_in_order=ord_theirs == ord_ours,
               same_shape_multiset=sorted(ord_theirs) == sorted(ord_ours),
               params_theirs=sum(t.numel() for t in state.values()), params_ours=sum(t.numel() for t in target.values()))
    try:
        fitted = fit_state_dict(ours, state, f"U-Bench {uname}")
        res["fits"] = True
    except UbenchError as exc:
        fitted = None
        res["fits"] = False
        res["fit_error"] = exc.what[:2000]
    save()
    if opts.no_forward:
        return

    # ---- same weights, same input: same output? (U-Bench's output first, noting the order in
    # which its modules first use their tensors, for the mapping below)
    constants = {k for k, _ in theirs.named_buffers(remove_duplicate=False)
                 if k in state and not k.endswith(RUNNING_STATS)}
    perturb(state, skip=constants)
    # modules that cache tensors derived from their weights when put in eval mode (EViT_UNet's
    # Attention4D: ``self.ab = attention_biases[:, idxs]``) computed them from the unperturbed
    # weights at the eval() above: put in eval mode again, so they are computed from these
    theirs.eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    if opts.float64:  # a near miss in float32: does it vanish in float64 (rounding) or stay (wiring)?
        theirs.double()
        theirs.eval()  # such caches again, now in float64
        ours.double()
        state = theirs.state_dict()
        target = ours.state_dict()
        x = x.double()
        res["float64"] = True
    t0 = time.time()
    try:
        with UseOrder(theirs, state) as theirs_order, TensorUseOrder(theirs.state_dict(keep_vars=True)) as theirs_uses, \
                EvalDropout() as dropout, torch.no_grad():
            theirs_out = theirs(x.clone())
        a, how_theirs = _final(theirs_out)
        if dropout.calls:
            res["dropout_in_eval_disabled"] = dropout.calls
    except BaseException as exc:  # noqa: BLE001
        res["forward_error"] = f"U-Bench forward: {type(exc).__name__}: {str(exc).strip()[:300]}"
        save()
        return
    res["forward_s_ubench"] = round(time.time() - t0, 1)
    # U-Bench's tensors held only by modules that never ran in this forward (a lower bound on unused
    # weights; a tensor tied to one that ran counts as reached)
    ran = {state[k].untyped_storage().data_ptr() for k in theirs_order.used if state[k].numel()}
    unreached = [k for k in state if state[k].numel() and state[k].untyped_storage().data_ptr() not in ran]
    res.update(unreached=len(unreached), unreached_numel=sum(state[k].numel() for k in unreached),
               unreached_modules=sorted({k.rsplit(".", 1)[0] for k in unreached})[:12])
    if os.environ.get("UBREF_MAMBA_SCAN_REF") == "1" and "mamba_ssm" in sys.modules:
        res["mamba_scan_ref"] = True
    if sys.flags.optimize:
        res["python_O"] = True
    list_note = " (U-Bench returns a list without do_deeps)" if isinstance(theirs_out, (list, tuple)) and not do_deeps else ""

    def compare(weights: dict, prefix: str, real: bool = False) -> None:
        """Load ``weights`` (under ``target``'s keys, or ubench's own where ``real``) into ubench's
        model (strictly), run it on x, compare with U-Bench's output."""
        try:
            ours.load_state_dict(weights if real else assemble(weights))
            with torch.no_grad():
                ours_out = ours(x.clone())
            b = final_output(ours_out)
        except BaseException as exc:  # noqa: BLE001
            res[prefix + "error"] = f"ubench forward: {type(exc).__name__}: {str(exc).strip()[:300]}"
            return
        how_ours = f"element -1 of {len(ours_out)}" if isinstance(ours_out, (list, tuple)) else "the tensor"
        res[prefix + "compared"] = f"U-Bench {how_theirs} vs ubench {how_ours}{list_note}"
        if tuple(a.shape) != tuple(b.shape):
            res[prefix + "error"] = f"output shapes differ: U-Bench {list(a.shape)} vs ubench {list(b.shape)}"
            return
        diff = (a.double() - b.double()).abs().max().item()
        scale = a.double().abs().max().item()
        res.update({prefix + "max_abs": diff, prefix + "max_rel": diff / scale if scale > 0 else float("inf"),
                    prefix + "finite": bool(torch.isfinite(a).all() and torch.isfinite(b).all()),
                    prefix + "finite_ubench_side": bool(torch.isfinite(b).all()),
                    prefix + "finite_u_bench_side": bool(torch.isfinite(a).all()),
                    "out_shape": list(a.shape)})

    def ours_first_use() -> list[str] | None:
        """ubench's keys in the order its modules first run (None, noted, if its forward fails)."""
        try:
            with UseOrder(ours, real_target) as ours_order, torch.no_grad():
                ours(x.clone())
        except BaseException as exc:  # noqa: BLE001
            res["map_error"] = f"ubench forward: {type(exc).__name__}: {str(exc).strip()[:300]}"
            return None
        return expand(ours_order.keys())

    if fitted is not None:
        compare(fitted, "", real=True)
        res["forward_s"] = round(time.time() - t0, 1)
        save()
        return
    # Not fitting: pair U-Bench's tensors with ubench's keys where the shapes allow, and let the
    # outputs say whether the pairing is right. U-Bench's state_dict as it is, or without the second
    # key of each tied pair, or also without the tensors its forward never ran (what ubench may leave
    # out): the first whose shapes are ubench's, as a multiset. Paired first by state_dict position
    # (keys renamed only), then, if that is not within tolerance, by the order in which the modules
    # first run in forward, each U-Bench tensor taking the first unpaired ubench key of its shape.
    ours_shapes = sorted(tuple(t.shape) for t in target.values())
    dup = {d: k for k, d in tied}  # the second key of each tied pair, or the first (MALUNet's view)
    first = {k: d for k, d in tied}
    variants = [({}, [])] + [(t, []) for t in (dup, first) if t]
    variants += [(t, [k for k in unreached if k not in t]) for t in (dup, first)] * bool(unreached)
    # U-Bench's constant buffers of shapes ubench holds none of (index tables and masks ubench
    # computes when it is built), set aside as well
    own_shapes = {tuple(t.shape) for t in target.values()}
    extra_consts = [k for k in state if k in constants and tuple(state[k].shape) not in own_shapes]
    variants = [(t, u, []) for t, u in variants] + [
        (t, u, [k for k in extra_consts if k not in t and k not in u]) for t, u in variants] * bool(extra_consts)
    plan = None
    for with_plan in (False, True):
        for drop_tied, drop_unused, drop_consts in variants:
            kept = {k: v for k, v in state.items() if k not in drop_tied and k not in drop_unused
                    and k not in drop_consts}
            if not with_plan and sorted(tuple(t.shape) for t in kept.values()) == ours_shapes:
                break
            if with_plan:
                plan = stack_plan(kept, target) or stack_plan_by_position(kept, target)
                if plan is not None:
                    break
        else:
            continue
        break
    else:
        kept = None
    real_target = target
    if plan:  # ubench's stacked or reshaped tensors seen in U-Bench's pieces and shapes (virtual keys)
        target, pieces_of = virtual_target(real_target, plan)
        res["plan"] = {k: [v[0], v[1] if v[0] == "split" else list(v[1])] for k, v in plan.items()}
        res["reshaped"] = {k: list(real_target[k].shape) for k, v in plan.items() if v[0] == "reshape"}
    else:
        pieces_of = {}

    def expand(keys: list[str]) -> list[str]:
        """ubench's real keys in some order -> the virtual keys of ``target`` in that order."""
        return [v for k in keys for v in pieces_of.get(k, [k])]

    def assemble(weights: dict) -> dict:
        """Weights under ``target``'s (virtual) keys -> ubench's real state_dict."""
        if not plan:
            return weights
        out = {}
        for k, t in real_target.items():
            ks = pieces_of.get(k, [k])
            out[k] = torch.cat([weights[v] for v in ks], 0) if len(ks) > 1 else weights[ks[0]].reshape(t.shape)
        return out

    if kept is not None and kept is not state and (drop_tied or drop_unused or drop_consts):
        res["map_dropped"] = {"tied": [[d, k] for d, k in drop_tied.items()], "unused": drop_unused,
                              "buffers": drop_consts}
    shipped = _shipped_pairing(opts, name, state, real_target)
    if shipped is not None:  # a map shipped before (or written from a pairing by name): checked again
        res["map_how"], res["key_map"], shipped_dropped, shipped_weights, shipped_reshaped = shipped
        compare(shipped_weights, "map_", real=True)
        res["map_tried"] = ["the shipped key map"]
        save()
        if res.get("map_max_rel") is not None and res["map_max_rel"] <= ROUNDING_F32:
            kept = None  # proven, or a near miss for the float64 check below: no pairing by shape
            res["map_dropped"] = shipped_dropped
            res["reshaped"] = shipped_reshaped
        else:
            res["map_shipped_max_rel"] = res.pop("map_max_rel", None)
            res.pop("key_map")
    in_order = kept is not None and [tuple(t.shape) for t in kept.values()] == [tuple(t.shape) for t in target.values()]
    if in_order:
        res["map_how"] = "state_dict position"
        res["key_map"] = dict(zip(kept, target))
        compare(dict(zip(target, kept.values())), "map_")
        save()
    if kept is not None and not (res.get("map_max_rel") is not None and res["map_max_rel"] <= REL_TOL):
        tried = {k: res.pop(k) for k in list(res) if k.startswith("map_") and k != "map_dropped"}
        tried_map = res.pop("key_map", None)
        res["map_how"] = "first use in forward"
        ours_keys = ours_first_use()
        key_map = pair_by_use(theirs_order.keys(), ours_keys, kept, target) if ours_keys is not None else None
        if key_map is not None:
            res["key_map"] = {k: key_map[k] for k in kept}
            res["map_reordered"] = sum(1 for a_, b_ in zip(theirs_order.keys(), ours_keys)
                                       if tuple(state[a_].shape) != tuple(target[b_].shape))
            compare({key_map[k]: kept[k] for k in kept}, "map_")
        if tried.get("map_max_rel") is not None and not (res.get("map_max_rel") is not None
                                                         and res["map_max_rel"] < tried["map_max_rel"]):
            res["key_map"] = tried_map
            res.pop("map_reordered", None)
            res.pop("map_error", None)
            res.update(tried)  # by position was closer
        res["map_tried"] = ["state_dict position"] * bool(tried) + ["first use in forward"]
    if kept is not None and not (res.get("map_max_rel") is not None and res["map_max_rel"] <= REL_TOL):
        tried = {k: res.pop(k) for k in list(res) if k.startswith("map_") and k not in ("map_dropped", "map_tried")}
        tried_map = res.pop("key_map", None)
        res["map_how"] = "groups by first use in a torch op"
        try:
            with TensorUseOrder(ours.state_dict(keep_vars=True)) as ours_uses, torch.no_grad():
                ours(x.clone())
        except BaseException as exc:  # noqa: BLE001
            res["map_error"] = f"ubench forward: {type(exc).__name__}: {str(exc).strip()[:300]}"
            key_map = None
        else:
            key_map = pair_groups(theirs, kept, theirs_uses.keys(kept), ours, target,
                                  expand(ours_uses.keys(real_target)))
        if key_map is not None:
            res["key_map"] = key_map
            compare({key_map[k]: kept[k] for k in kept}, "map_")
        if not (res.get("map_max_rel") is not None and (tried.get("map_max_rel") is None
                                                        or res["map_max_rel"] < tried["map_max_rel"])):
            res["key_map"] = tried_map
            res.pop("map_error", None)
            res.update(tried)
        res["map_tried"] = res.get("map_tried", []) + ["groups by first use in a torch op"]
    if kept is not None and not (res.get("map_max_rel") is not None and res["map_max_rel"] <= REL_TOL):
        named = backbone_pairs(name, kept, target)
        if named:
            tried = {k: res.pop(k) for k in list(res) if k.startswith("map_") and k not in ("map_dropped", "map_tried")}
            tried_map = res.pop("key_map", None)
            res["map_how"] = "backbone by name, the rest by first use in forward"
            ours_keys = ours_first_use()
            if ours_keys is not None:
                key_map = pair_by_use(theirs_order.keys(), ours_keys, kept, target, fixed=named)
                if key_map is not None and len(key_map) == len(kept):
                    res["key_map"] = key_map
                    res["map_named"] = len(named)
                    compare({key_map[k]: kept[k] for k in kept}, "map_")
            if not (res.get("map_max_rel") is not None and (tried.get("map_max_rel") is None
                                                            or res["map_max_rel"] < tried["map_max_rel"])):
                res["key_map"] = tried_map
                res.pop("map_error", None)
                res.pop("map_named", None)
                res.update(tried)
            res["map_tried"] = res.get("map_tried", []) + ["backbone by name"]
    rel = res.get("map_max_rel")
    if res.get("key_map") and rel is not None and REL_TOL < rel <= ROUNDING_F32 and not opts.float64:
        # a near miss in float32: the same pairing in float64 says rounding (it vanishes) or wiring
        try:
            theirs.double()
            theirs.eval()  # caches derived from weights (see above) in float64
            ours.double()
            with EvalDropout(), KeepFloat64(), torch.no_grad():
                a64, _ = _final(theirs(x.double()))
            s64 = theirs.state_dict()
            if shipped is not None and res["map_how"] == shipped[0]:
                ours.load_state_dict(_shipped_pairing(opts, name, s64, ours.state_dict())[3])
            else:
                ours.load_state_dict(assemble({v: s64[k] for k, v in res["key_map"].items()}))
            with KeepFloat64(), torch.no_grad():
                b64 = final_output(ours(x.double()))
            res["map_max_rel_f64"] = (a64 - b64).abs().max().item() / a64.abs().max().item()
        except BaseException as exc:  # noqa: BLE001
            res["map_f64_error"] = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
    res["forward_s"] = round(time.time() - t0, 1)
    save()


def pair_by_use(theirs_keys: list[str], ours_keys: list[str], kept: dict, target: dict,
                fixed: dict[str, str] | None = None) -> dict[str, str] | None:
    """U-Bench key -> ubench key: ``fixed`` pairs as given, then each U-Bench tensor of ``kept`` in
    ``theirs_keys`` order takes the first unpaired ubench key of its shape in ``ours_keys`` order;
    None when some tensor finds none."""
    key_map = dict(fixed or {})
    taken = set(key_map.values())
    pool = [q for q in ours_keys if q not in taken]
    for k in [k for k in theirs_keys if k in kept and k not in key_map]:
        j = next((i for i, q in enumerate(pool) if tuple(target[q].shape) == tuple(kept[k].shape)), None)
        if j is None:
            return None
        key_map[k] = pool.pop(j)
    return key_map


def backbone_pairs(name: str, kept: dict, target: dict) -> dict[str, str]:
    """U-Bench key -> ubench key for the backbone(s) of the model, by name: each pretrained record's
    key map (ubench/models/pretrained.py, release names -> ubench's), and the PVTv2 names for each
    PVTv2 encoder, applied after the U-Bench prefix that makes the most keys land on a ubench key of
    the same shape."""
    from ubench.models.ops.pvt import pvt_v2_key_map
    from ubench.models.pretrained import map_keys, pretrained_records

    records = list(pretrained_records(name))
    # a PVTv2 encoder anywhere in ubench's model: the PVT authors' names (U-Bench's vendored PVT
    # keeps them) map onto it even where U-Bench loads no pretrained file
    tail = "stages.0.embed.proj.weight"
    records += [{"key_map": pvt_v2_key_map(k[:-len(tail)])} for k in target if k.endswith(tail)]
    pairs: dict[str, str] = {}
    for rec in records:
        prefixes = {""} | {".".join(k.split(".")[:d]) + "." for k in kept for d in (1, 2, 3) if k.count(".") > d}
        best: dict[str, str] = {}
        for pre in sorted(prefixes):
            found = {}
            for k in kept:
                if not k.startswith(pre) or k in pairs:
                    continue
                new = list(map_keys({k[len(pre):]: kept[k]}, rec))
                if new and new[0] in target and tuple(target[new[0]].shape) == tuple(kept[k].shape):
                    found[k] = new[0]
            if len(found) > len(best) and len(set(found.values())) == len(found):
                best = found
        taken = set(pairs.values())
        pairs.update({k: v for k, v in best.items() if v not in taken})
    return pairs


def _squeezed(shape: tuple) -> tuple:
    """``shape`` without its trailing 1s (a 1x1 kernel's ``[o, i, 1, 1]`` -> ``[o, i]``)."""
    while shape and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _stacks(shape: tuple, piece: tuple) -> int:
    """How many tensors of ``piece`` shape stacked on dim 0 make one of ``shape`` (0: none, or one)."""
    if len(piece) != len(shape) or piece[1:] != shape[1:] or not 0 < piece[0] < shape[0] or shape[0] % piece[0]:
        return 0
    return shape[0] // piece[0]


def stack_plan(kept: dict, target: dict) -> dict | None:
    """How ubench's tensors whose shapes U-Bench lacks are U-Bench's pieces: {ubench key:
    ("split", n, piece shape)} where U-Bench holds n tensors of ``piece shape`` stacked on dim 0 in
    one ubench tensor (query, key and value as one qkv; per-group convolutions as one grouped
    convolution), or ("reshape", U-Bench shape) where only trailing 1s differ (a 1x1 convolution as
    a linear layer). Every ubench tensor of such a shape is taken so (else it is ambiguous which);
    None unless the shapes then pair exactly."""
    from collections import Counter

    theirs = Counter(tuple(t.shape) for t in kept.values())
    ours = Counter(tuple(t.shape) for t in target.values())
    left_t, left_o = theirs - ours, ours - theirs
    if not left_o:
        return None
    plan = {}
    for shape, n in sorted(left_o.items()):
        if ours[shape] != n:
            return None
        same = [t for t in sorted(left_t) if left_t[t] >= n and _squeezed(t) == _squeezed(shape)]
        if same:
            left_t[same[0]] -= n
            plan[shape] = ("reshape", same[0])
            continue
        split = [t for t in sorted(left_t) if _stacks(shape, t) and left_t[t] >= n * _stacks(shape, t)]
        if len(split) != 1:
            return None
        left_t[split[0]] -= n * _stacks(shape, split[0])
        plan[shape] = ("split", _stacks(shape, split[0]), split[0])
    if +left_t:
        return None
    return {k: plan[tuple(t.shape)] for k, t in target.items() if tuple(t.shape) in plan}


def stack_plan_by_position(kept: dict, target: dict) -> dict | None:
    """Like ``stack_plan``, per ubench key, where the shapes alone are ambiguous (some tensors of a
    stacked shape are plain ones): the two state_dicts walked in order, each ubench tensor taken as
    it is when U-Bench's next tensor has its shape, else as the stack of U-Bench's next n tensors
    when these have one piece shape, else reshaped; None unless every tensor pairs so."""
    theirs = [tuple(t.shape) for t in kept.values()]
    plan, i = {}, 0
    for k, t in target.items():
        shape = tuple(t.shape)
        if i < len(theirs) and theirs[i] == shape:
            i += 1
            continue
        if i >= len(theirs):
            return None
        piece = theirs[i]
        n = _stacks(shape, piece)
        if n and theirs[i:i + n] == [piece] * n:
            plan[k] = ("split", n, piece)
            i += n
        elif _squeezed(piece) == _squeezed(shape):
            plan[k] = ("reshape", piece)
            i += 1
        else:
            return None
    return plan if plan and i == len(theirs) else None


def virtual_target(target: dict, plan: dict) -> tuple[dict, dict[str, list[str]]]:
    """ubench's state seen through ``plan`` ({ubench key: how}): each split tensor as its pieces ``KEY#0``, ``KEY#1``...
    (in place, so state_dict order holds), each reshaped one in U-Bench's shape; and {real key:
    its virtual keys} for the split and reshaped ones."""
    out, pieces_of = {}, {}
    for k, t in target.items():
        how = plan.get(k)
        if how is None:
            out[k] = t
        elif how[0] == "reshape":
            out[k] = t.reshape(how[1])
            pieces_of[k] = [k]
        else:
            pieces_of[k] = [f"{k}#{i}" for i in range(how[1])]
            out.update(zip(pieces_of[k], t.chunk(how[1], 0)))
    return out, pieces_of


def _shipped_pairing(opts, name: str, state: dict, target: dict):
    """The map in ``--keymaps`` for this model, applied to U-Bench's state by ``apply_keymap`` (the
    import's own code), when that gives exactly ubench's keys and shapes: (how, U-Bench key ->
    ubench key, with ``KEY#i`` for the i-th piece of a fused tensor, what it drops, the weights,
    {reshaped key: shape}); else None."""
    from ubench.errors import UbenchError
    from ubench.ubench_keymap import apply_keymap, load_keymap_file, rename_key

    path = Path(opts.keymaps) / f"{name}.json" if opts.keymaps else None
    if path is None or not path.is_file():
        return None
    km = load_keymap_file(path)
    if not (km.rules or km.fused or km.reshaped) and km.paired_by != "identical keys":
        return None
    try:
        weights = apply_keymap(state, km, name)
    except UbenchError:
        return None
    if sorted(weights) != sorted(target) or any(tuple(weights[k].shape) != tuple(target[k].shape) for k in target):
        return None
    dropped = {d for d, _ in km.tied} | set(km.unused) | set(km.buffers)
    fused = {src: f"{new}#{i}" for new, srcs in km.fused for i, src in enumerate(srcs)}
    pairs = {k: fused.get(k) or rename_key(k, km.rules) or k for k in state if k not in dropped}
    return (km.paired_by, pairs,
            {"tied": [list(t) for t in km.tied], "unused": list(km.unused), "buffers": list(km.buffers)},
            weights, {k: list(shape) for k, shape in km.reshaped})


def _built_before(exc: BaseException, factory):
    """The module a factory function had built when ``exc`` stopped it (from its frame), or None."""
    import torch

    code = getattr(factory, "__code__", None)
    tb = exc.__traceback__
    while tb is not None and code is not None:
        if tb.tb_frame.f_code is code:
            found = {k: v for k, v in tb.tb_frame.f_locals.items() if isinstance(v, torch.nn.Module)}
            if "model" in found:
                return found["model"]
            return next(iter(found.values())) if len(found) == 1 else None
        tb = tb.tb_next
    return None


def perturb(state: dict, skip: set[str] = frozenset()) -> None:
    """Give every floating tensor of a freshly built model distinct, deterministic values, in place.

    A new model's norms are all ones and zeros, so swapping two of them (a wrong key pairing) would
    not change its output; after this, equal outputs do say the pairing is right. In place, so
    tensors U-Bench ties together stay tied; running variances stay positive. The keys in ``skip``
    (constant buffers: index tables, masks, which a checkpoint holds as built) keep their values."""
    import torch

    g = torch.Generator().manual_seed(1)
    done = set()
    with torch.no_grad():
        for key, t in state.items():
            if not t.is_floating_point() or not t.numel() or key in skip:
                continue
            ptr = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.stride()))
            if ptr in done:
                continue
            done.add(ptr)
            noise = torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)
            if key.endswith("running_var"):
                t.copy_(0.5 + noise.abs())
            else:
                scale = float(t.double().std()) if t.numel() > 1 else 0.0
                t.add_(noise * max(0.1 * scale, 0.02))


class EvalDropout:
    """Dropout that is still in training mode during an eval forward (a module built inside
    ``forward``, as U-Bench's CA_Net does) made the identity, and counted: such a model's eval output
    is random, and ubench's model, whose dropout is registered, is deterministic."""

    NAMES = ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")

    def __enter__(self):
        import torch.nn.functional as F

        self.calls, self.saved = 0, {n: getattr(F, n) for n in self.NAMES if hasattr(F, n)}

        def make(orig):
            def guarded(input, p=0.5, training=True, inplace=False):
                if training and p > 0:
                    self.calls += 1
                    return input
                return orig(input, p, training, inplace)
            return guarded

        for n, orig in self.saved.items():
            setattr(F, n, make(orig))
        return self

    def __exit__(self, *exc):
        import torch.nn.functional as F

        for n, orig in self.saved.items():
            setattr(F, n, orig)
        return False


class KeepFloat64:
    """``Tensor.float()`` leaves a float64 tensor as it is, for the float64 recheck: code that casts
    to float32 on purpose (mamba_ssm's ``selective_scan_ref``, U-Bench's SS2D) then runs in float64
    throughout, on both sides, as the check means; any other tensor is cast as usual."""

    def __enter__(self):
        import torch

        self.orig = torch.Tensor.float
        orig = self.orig

        def keep(t, *args, **kwargs):
            return t if t.dtype == torch.float64 else orig(t, *args, **kwargs)

        torch.Tensor.float = keep
        return self

    def __exit__(self, *exc):
        import torch

        torch.Tensor.float = self.orig
        return False


class TensorUseOrder:
    """The order in which a model's state tensors are first passed to a torch op in forward (a torch
    function mode: parameters used straight from a module or a ParameterList count too); tensors
    never passed follow in state_dict order. Give it ``state_dict(keep_vars=True)``: the tensors the
    model holds, not detached copies."""

    def __init__(self, state):
        self.by_id: dict[int, list[str]] = {}
        for k, t in state.items():
            self.by_id.setdefault(id(t), []).append(k)
        self.used: list[str] = []

    def __enter__(self):
        from torch.overrides import TorchFunctionMode
        from torch.utils._pytree import tree_flatten

        rec = self

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                for a in tree_flatten((args, kwargs or {}))[0]:
                    for k in rec.by_id.pop(id(a), ()):
                        rec.used.append(k)
                return func(*args, **(kwargs or {}))

        self.mode = Mode()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)
        return False

    def keys(self, state) -> list[str]:
        used = set(self.used)
        return [k for k in self.used if k in state] + [k for k in state if k not in used]


def _groups(model, keys: list[str]) -> dict[str, list[str]]:
    """Tensor keys grouped by the module that holds their leaf module (a conv and its norm in one
    block), or by their own module when it has submodules; groups in the order of ``keys``."""
    modules = dict(model.named_modules())
    groups: dict[str, list[str]] = {}
    for k in keys:
        owner = k.rsplit(".", 1)[0] if "." in k else ""
        mod = modules.get(owner)
        group = owner.rsplit(".", 1)[0] if owner and mod is not None and not any(True for _ in mod.children()) \
            else owner
        if "." not in owner and mod is not None and not any(True for _ in mod.children()):
            group = ""
        groups.setdefault(group, []).append(k)
    return groups


def pair_groups(theirs, kept, theirs_keys, ours, target, ours_keys):
    """U-Bench key -> ubench key: groups paired by their multiset of shapes in order of first use,
    tensors within a pair of groups by first use among those of their shape; None when some group
    has no partner."""
    def sig(state, ks):
        return tuple(sorted(tuple(state[k].shape) for k in ks))

    pool = list(_groups(ours, ours_keys).items())
    key_map = {}
    for _, ks in _groups(theirs, [k for k in theirs_keys if k in kept]).items():
        want = sig(kept, ks)
        j = next((i for i, (_, qs) in enumerate(pool) if sig(target, qs) == want), None)
        if j is None:
            return None
        qs = list(pool.pop(j)[1])
        for k in ks:
            i = next(i for i, q in enumerate(qs) if tuple(target[q].shape) == tuple(kept[k].shape))
            key_map[k] = qs.pop(i)
    return key_map if len(key_map) == len(kept) else None


class UseOrder:
    """Records the order in which a model's modules first run (forward pre-hooks), as the order of
    the state_dict keys they hold; keys never reached follow in state_dict order."""

    def __init__(self, model, state):
        self.model, self.state, self.used, self.handles = model, state, [], []

    def __enter__(self):
        seen = set()
        for mname, module in self.model.named_modules():
            own = [f"{mname}.{n}" if mname else n for n, _ in
                   list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))]
            own = [k for k in own if k in self.state]
            if not own:
                continue

            def hook(mod, args, own=own):
                for k in own:
                    if k not in seen:
                        seen.add(k)
                        self.used.append(k)

            self.handles.append(module.register_forward_pre_hook(hook))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False

    def keys(self) -> list[str]:
        used = set(self.used)
        return self.used + [k for k in self.state if k not in used]


# ---------------------------------------------------------------- driver

def _fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}e}"


def row(r: dict) -> str:
    """One markdown table row from a child's result."""
    built = "yes" if r.get("built") else ("no" if r.get("build_error") else "?")
    counts = f"{r.get('n_theirs', '-')} / {r.get('n_ours', '-')}"
    fits = {True: "yes", False: "no", None: "-"}[r.get("fits")]
    diffs, notes = "", []
    if r.get("fits") is False:
        parts = []
        for cat, first in (("missing", "first_missing"), ("unexpected", "first_unexpected"), ("misshaped", "first_misshaped")):
            if r.get(cat):
                named = ", ".join(f"`{k}`" for k in r[first]) + (", …" if r[cat] > FIRST else "")
                parts.append(f"{r[cat]} {cat} ({named})")
        diffs = "; ".join(parts)
        if r.get("same_shapes_in_order"):
            notes.append("same shapes in the same order (keys renamed)")
        elif r.get("same_shape_multiset"):
            notes.append("same shapes, other order")
        if r.get("params_theirs") is not None:
            notes.append(f"numel {r['params_theirs']:,} vs {r['params_ours']:,}")
        if r.get("unreached"):
            notes.append(f"{r['unreached']} U-Bench keys ({r['unreached_numel']:,} numel) in modules its forward never ran")
    if r.get("build_error"):
        notes.append("build: " + r["build_error"])
    if r.get("forward_error"):
        notes.append(r["forward_error"])
    if r.get("compared") and r.get("max_abs") is not None:
        notes.append(r["compared"])
    if r.get("error"):
        notes.append(r["error"])
    mapped = "-"
    if r.get("map_how"):
        if r.get("map_max_rel") is not None:
            mapped = f"{_fmt(r['map_max_rel'])} (by {r['map_how']})"
            for side, label in (("map_finite_u_bench_side", "U-Bench"), ("map_finite_ubench_side", "ubench")):
                if r.get(side) is False:
                    notes.append(f"{label} output not finite with the paired weights")
        else:
            mapped = f"not compared (by {r['map_how']})"
            notes.append(r.get("map_error", ""))
    if r.get("mamba_scan_ref"):
        notes.append("U-Bench forward with mamba_ssm's selective_scan_ref (no CUDA kernel)")
    if r.get("timeout"):
        notes.append(f"timed out after {r['timeout']} s in the child")
    if r.get("child_error"):
        notes.append(r["child_error"])
    cfg = r.get("config") or {}
    if cfg.get("pretrained_not_loaded"):
        notes.append(f"{len(cfg['pretrained_not_loaded'])} pretrained load(s) skipped")
    if cfg.get("cuda_extensions_not_built"):
        notes.append("CUDA ext not built: " + ", ".join(cfg["cuda_extensions_not_built"]))
    if r.get("tied"):
        notes.append(f"{r['tied']} tied pair(s)")
    note = "; ".join(n for n in notes if n).replace("|", "\\|").replace("\n", " ")
    diffs = diffs.replace("|", "\\|")
    return (f"| {r['name']} | {r.get('ubench_name', '')} | {built} | {counts} | {fits} | {diffs} | "
            f"{_fmt(r.get('max_abs'))} | {_fmt(r.get('max_rel'))} | {mapped} | {note} |")


HEADER = ("| ubench | U-Bench | U-Bench builds? | #keys U-Bench / ubench | fits unchanged? | first differences | "
          "max abs diff | max rel diff | keys paired (how): max rel diff | note |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def summary(results: list[dict]) -> str:
    built = [r for r in results if r.get("built")]
    fits = [r for r in built if r.get("fits")]
    compared = [r for r in fits if r.get("max_rel") is not None]
    equal = [r for r in compared if r["max_rel"] <= REL_TOL]
    lines = [f"- models: {len(results)}; U-Bench builds: {len(built)}; fits unchanged: {len(fits)}; "
             f"outputs compared: {len(compared)}; equal within {REL_TOL:g} relative: {len(equal)}",
             "- not built: " + (", ".join(r.get("ubench_name", r["name"]) for r in results if not r.get("built")) or "none"),
             "- do not fit: " + (", ".join(r["ubench_name"] for r in built if r.get("fits") is False) or "none"),
             "- fit but outputs differ (> tolerance): "
             + (", ".join(r["ubench_name"] for r in compared if not r["max_rel"] <= REL_TOL) or "none"),
             "- fit but not compared: " + (", ".join(r["ubench_name"] for r in fits if r.get("max_rel") is None) or "none")]
    paired = [r for r in built if r.get("map_max_rel") is not None]
    lines.append(f"- not fitting, keys paired by state_dict position or first use in forward, outputs compared: "
                 f"{len(paired)}; equal within {REL_TOL:g} relative: "
                 + (", ".join(f"{r['ubench_name']} ({r['map_how']})" for r in paired if r["map_max_rel"] <= REL_TOL) or "none")
                 + "; differ or not finite: "
                 + (", ".join(r["ubench_name"] for r in paired if not r["map_max_rel"] <= REL_TOL) or "none"))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ubench-src", required=True, help="a checkout (or git archive) of U-Bench's code")
    ap.add_argument("--commit", default="", help="U-Bench's commit (default: HEAD of --git-dir, if given)")
    ap.add_argument("--git-dir", help="U-Bench's git directory, to read --commit from")
    ap.add_argument("--site", action="append", default=[], help="a directory of U-Bench's third-party packages "
                    "or stubs for sys.path (repeatable; earlier ones first)")
    ap.add_argument("--models", nargs="*", help="ubench model names (default: all with a U-Bench name)")
    ap.add_argument("--out-dir", default=str(OUT_DIR))
    ap.add_argument("--report", default=str(REPORT))
    ap.add_argument("--keymaps", default="", help="write a key map per proven model here (ubench/keymaps)")
    ap.add_argument("--results", help="JSON file for all results (default: the report with .json)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per model (child process)")
    ap.add_argument("--no-forward", action="store_true", help="keys and fit only")
    ap.add_argument("--float64", action="store_true", help="compare outputs in float64 (results only: "
                    "use with --results elsewhere and no --keymaps; maps are proven in float32)")
    ap.add_argument("--resume", action="store_true", help="keep the results already in --results and run the rest")
    ap.add_argument("--py310-dataclass-defaults", action="store_true")
    ap.add_argument("--torchvision-op-schemas", action="store_true")
    ap.add_argument("--model-site", action="append", default=[], metavar="NAME=DIR",
                    help="DIR first on sys.path for U-Bench's model NAME only (repeatable)")
    ap.add_argument("--skip-asserts", action="store_true",
                    help="run the children with python -O (asserts compute nothing; U-Bench's AC_MambaSeg asserts "
                         "its scan output is float32, which stops the float64 recheck); noted in the results")
    ap.add_argument("--mamba-scan-ref", action="store_true",
                    help="set UBREF_MAMBA_SCAN_REF=1 for the children: a mamba_ssm stand-in that honours it "
                         "runs mamba_ssm's pure-torch selective_scan_ref in place of the CUDA kernel")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child: one model
    ap.add_argument("--result-file", help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    if not opts.commit and opts.git_dir:
        opts.commit = subprocess.run(["git", f"--git-dir={opts.git_dir}", "rev-parse", "HEAD"],
                                     capture_output=True, text=True, check=True).stdout.strip()
    if opts.one:
        run_one(opts.one, opts, Path(opts.result_file))
        return 0
    if not opts.commit:
        ap.error("give --commit (or --git-dir) so the fixtures name U-Bench's commit")
    if opts.float64 and opts.keymaps:
        ap.error("--float64 is a diagnosis: key maps are proven in float32 (drop --keymaps)")
    if opts.keymaps:  # the children work in U-Bench's checkout
        opts.keymaps = str(Path(opts.keymaps).resolve())

    from ubench.models import list_models, model_info

    names = opts.models or [n for n in list_models() if model_info(n).ubench_name]
    results = []
    report, results_path = Path(opts.report), Path(opts.results or Path(opts.report).with_suffix(".json"))
    if opts.resume and results_path.is_file():
        results = [r for r in json.loads(results_path.read_text()) if r["name"] in names]
    done = {r["name"] for r in results}
    print(HEADER, flush=True)
    for r in results:
        print(row(r), flush=True)
    results.sort(key=lambda x: names.index(x["name"]))
    for name in [n for n in names if n not in done]:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
            rpath = Path(fh.name)
        cmd = [sys.executable] + ["-O"] * opts.skip_asserts
        cmd += [str(Path(__file__).resolve()), "--one", name, "--result-file", str(rpath),
               "--ubench-src", opts.ubench_src, "--commit", opts.commit, "--out-dir", opts.out_dir]
        cmd += [a for s in opts.site for a in ("--site", s)]
        cmd += ["--no-forward"] * opts.no_forward + ["--py310-dataclass-defaults"] * opts.py310_dataclass_defaults
        cmd += ["--float64"] * opts.float64 + ["--keymaps", opts.keymaps] * bool(opts.keymaps)
        cmd += ["--torchvision-op-schemas"] * opts.torchvision_op_schemas
        cmd += [a for s in opts.model_site for a in ("--model-site", s)]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
        if opts.mamba_scan_ref:
            env["UBREF_MAMBA_SCAN_REF"] = "1"
        t0 = time.time()
        log = Path(tempfile.gettempdir()) / f"ubench_keys_{name}.log"
        with open(log, "w") as lf:
            proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env)
            try:
                rc = proc.wait(timeout=opts.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = None
        try:
            r = json.loads(rpath.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            r = {}
        rpath.unlink(missing_ok=True)
        r.setdefault("name", name)
        r.setdefault("ubench_name", model_info(name).ubench_name)
        r["seconds"] = round(time.time() - t0, 1)
        if rc is None:
            r["timeout"] = opts.timeout
        elif rc != 0:
            tail = log.read_text()[-400:].strip().splitlines()
            r["child_error"] = f"child exit {rc}: " + (tail[-1] if tail else "")
        results.append(r)
        results.sort(key=lambda x: names.index(x["name"]))
        print(row(r), flush=True)
        report.write_text(HEADER + "\n" + "\n".join(row(x) for x in results) + "\n\n" + summary(results) + "\n")
        results_path.write_text(json.dumps(results, indent=1))
    report.write_text(HEADER + "\n" + "\n".join(row(x) for x in results) + "\n\n" + summary(results) + "\n")
    results_path.write_text(json.dumps(results, indent=1))
    print("\n" + summary(results))
    written = write_keymaps(results, Path(opts.keymaps), opts.commit) if opts.keymaps else []
    print(f"\nwrote {report} and {results_path}; fixtures in {opts.out_dir}"
          + (f"; {len(written)} key maps in {opts.keymaps}" if opts.keymaps else ""))
    return 0


def keymap_of(r: dict, commit: str):
    """The KeyMap a model's result proves, or the status that says why U-Bench's weights are refused."""
    from ubench.ubench_keymap import PROVEN, KeyMap, derive_rules

    def rel(v):
        return None if v is None or v != v or v == float("inf") else float(f"{v:.3g}")

    notes = ["U-Bench's side run with mamba_ssm's pure-PyTorch selective_scan_ref (no CUDA kernel)"
             * bool(r.get("mamba_scan_ref")),
             "run under python -O (asserts off)" * bool(r.get("python_O")),
             f"U-Bench's eval forward ran {r['dropout_in_eval_disabled']} dropout call(s) in training mode "
             "(modules built inside forward), made the identity for the comparison: U-Bench's own eval "
             "output is random there, ubench's is not" if r.get("dropout_in_eval_disabled") else ""]
    common = dict(model=r["name"], ubench_model=r["ubench_name"], source=r.get("source") or f"{REPO}@{commit}",
                  notes="; ".join(n for n in notes if n))
    if r.get("fits"):
        if r.get("max_rel") is None:
            return KeyMap(status="not compared", **{**common, "notes": r.get("forward_error", "")})
        ok = r["max_rel"] <= REL_TOL and r.get("finite", False)
        return KeyMap(status=PROVEN if ok else "outputs differ", paired_by="identical keys",
                      max_rel_diff=rel(r["max_rel"]), **common)
    if r.get("key_map") and r.get("map_max_rel") is not None:
        rounding = r.get("map_max_rel_f64") is not None and r["map_max_rel_f64"] <= F64_TOL
        ok = (r["map_max_rel"] <= REL_TOL or rounding) and r.get("map_finite", False)
        if ok and rounding and r["map_max_rel"] > REL_TOL:
            common["notes"] = "; ".join(filter(None, [common["notes"], (
                f"float32 outputs differ by {r['map_max_rel']:.2g} relative, above 1e-5; the same pairing in "
                f"float64 gives {r['map_max_rel_f64']:.2g}, so the float32 gap is rounding, not wiring")]))
        dropped = r.get("map_dropped") or {}
        if not ok:
            return KeyMap(status="outputs differ", paired_by=r["map_how"], max_rel_diff=rel(r["map_max_rel"]),
                          **{**common, "notes": "; ".join(filter(None, [
                              common["notes"], "with U-Bench's tensors paired to ubench's by shape (tried: "
                              + ", ".join(r.get("map_tried") or [r["map_how"]]) + "), "
                              + ("ubench's output is not finite (perhaps a running variance paired with a tensor "
                                 "that is not one)" if not r.get("map_finite_ubench_side", True)
                                 else "the outputs differ")
                              + ": either no pairing by shape is right or the computation differs"]))})
        reshaped = tuple((k, tuple(shape)) for k, shape in sorted((r.get("reshaped") or {}).items()))
        plain = {k: v for k, v in r["key_map"].items() if "#" not in v}
        pieces: dict[str, dict[int, str]] = {}
        for k, v in r["key_map"].items():
            if "#" in v:
                new, i = v.rsplit("#", 1)
                pieces.setdefault(new, {})[int(i)] = k
        return KeyMap(status=PROVEN, paired_by=r["map_how"], max_rel_diff=rel(r["map_max_rel"]),
                      rules=derive_rules(plain), tied=tuple(tuple(t) for t in dropped.get("tied", [])),
                      unused=tuple(dropped.get("unused", [])), buffers=tuple(dropped.get("buffers", [])),
                      fused=tuple((new, tuple(ps[i] for i in sorted(ps))) for new, ps in sorted(pieces.items())),
                      reshaped=reshaped, **{**common, "notes": "; ".join(filter(None, [
                          common["notes"], _stack_notes(pieces, reshaped, dropped.get("buffers", []))]))})
    if r.get("forward_error"):  # nothing can be proven without U-Bench's output, paired or not
        paired = "" if r.get("same_shape_multiset") or r.get("map_dropped") else (
            f"; its {r.get('n_theirs')} tensors do not pair with ubench's {r.get('n_ours')} by shape as they "
            "are (which of them its forward never runs could not be seen)")
        return KeyMap(status="not compared", **{**common, "notes": r["forward_error"] + paired})
    why = (f"{r.get('n_theirs')} U-Bench tensors ({r.get('params_theirs', 0):,} values) vs ubench's "
           f"{r.get('n_ours')} ({r.get('params_ours', 0):,}); their shapes do not pair even without tied "
           "tensors and those U-Bench's forward never runs")
    return KeyMap(status="not paired", **{**common, "notes": why})


def _stack_notes(pieces: dict, reshaped: tuple, buffers: list) -> str:
    """What a map does besides renaming, in words, for its ``notes``."""
    out = []
    if pieces:
        n = sum(len(p) for p in pieces.values())
        first, parts = next(iter(pieces.items()))
        out.append(f"{len(pieces)} ubench tensors are {n} of U-Bench's stacked on dim 0 (e.g. "
                   f"{', '.join(parts[i] for i in sorted(parts)[:3])} -> {first}, in that order)")
    if reshaped:
        out.append(f"{len(reshaped)} tensors viewed in ubench's shape (same values; e.g. {reshaped[0][0]} "
                   f"{list(reshaped[0][1])})")
    if buffers:
        out.append(f"{len(buffers)} constant buffers of U-Bench's (index tables, masks; e.g. {buffers[0]}) are "
                   "computed by ubench's module when it is built: not loaded")
    return "; ".join(out)


def write_keymaps(results: list[dict], folder: Path, commit: str) -> list[str]:
    """``ubench/keymaps/MODEL.json`` for every model U-Bench built here: a proven map, or the
    status that says why its weights are refused."""
    from ubench.io import json_dumps, write_text_atomic

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for r in results:
        if r.get("built"):
            write_text_atomic(folder / f"{r['name']}.json", json_dumps(keymap_of(r, commit).as_json()))
            written.append(r["name"])
    return written


if __name__ == "__main__":
    sys.exit(main())
