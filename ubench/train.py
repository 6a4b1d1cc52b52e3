"""The training loop: U-Bench's protocol, nothing model- or dataset-specific inside.

SGD (lr, momentum, weight decay from params), polynomial decay per iteration, MONAI's DiceCELoss
(= U-Bench's 0.5·BCE + per-image soft Dice), deep-supervision losses averaged, best checkpoint by
validation IoU. Per-epoch loss and IoU go to dvclive. The checkpoint and the dvclive folder appear
only when training finishes: a crash or a NaN loss leaves neither behind.

Speed: batches come from the memory map and are normalised and augmented on the device
(``ubench.data.batches``); losses stay on the device until the epoch ends (one sync per epoch, where
the finiteness check runs); validation counts pixels on the device and skips HD95. Optional, off by
default because they change the bits of the results: ``train.amp`` (bf16 / fp16 autocast, fp16
with a GradScaler), ``train.channels_last``, ``train.compile``.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import shutil
import signal
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ubench.checkpoint import checkpoint_bytes
from ubench.config import Config, as_dict
from ubench.data.batches import SplitBatches
from ubench.errors import UbenchError
from ubench.inference import EVAL_BATCH, make_dataset, predict_scores
from ubench.io import atomic_outputs, json_dumps, write_bytes_atomic
from ubench.models import create_model, uses_selective_scan
from ubench.models.pretrained import load_pretrained, pretrained_records
from ubench.runtime import autocast, device, make_deterministic, platform_fingerprint


def make_loss(cfg: Config, num_classes: int = 1):
    """U-Bench's BCE + Dice for one output channel; softmax CE + Dice over classes otherwise."""
    from monai.losses import DiceCELoss

    weights = {"lambda_ce": cfg.train.lambda_ce, "lambda_dice": cfg.train.lambda_dice}
    if num_classes == 1:
        base = DiceCELoss(sigmoid=True, **weights)
    else:  # the mask holds class indices; Dice over the foreground classes only
        base = DiceCELoss(softmax=True, to_onehot_y=True, include_background=False, **weights)

    def loss_fn(out, target):
        outs = out if isinstance(out, (list, tuple)) else [out]
        return sum(base(o, target) for o in outs) / len(outs)

    return loss_fn


class TrainStep:
    """One optimizer step on a batch already on the device; returns the loss, detached, on the
    device (no sync). A class of its own so that ``benchmarks/`` times exactly the loop's step."""

    def __init__(self, forward, loss_fn, opt, sched, scaler, dev, amp: str, memory_format):
        self.forward, self.loss_fn, self.opt, self.sched, self.scaler = forward, loss_fn, opt, sched, scaler
        self.dev, self.amp, self.memory_format = dev, amp, memory_format

    def __call__(self, batch: dict) -> torch.Tensor:
        image = batch["image"].contiguous(memory_format=self.memory_format)
        with autocast(self.dev, self.amp):
            loss = self.loss_fn(self.forward(image), batch["mask"])
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        return loss.detach().float()


def pretrained_record(model: torch.nn.Module, model_name: str, tc) -> dict:
    """Load the backbone weights U-Bench loads when ``train.pretrained`` asks for them; return what
    the checkpoint and metrics record: whether they were asked for, and each file's name and hash."""
    files = load_pretrained(model, model_name, tc.weights_dir) if tc.pretrained else []
    return {"requested": tc.pretrained, "has_backbone": bool(pretrained_records(model_name)), "files": files}


def train_model(model_name: str, prepared: Path, cfg: Config, ckpt_path: Path, live_dir: Path,
                protocol: str, resume_path: Path | None = None) -> dict:
    """Train ``model_name`` on a prepared dataset; write the best checkpoint and dvclive logs.

    With ``train.resume_every`` N > 0 the state after every N-th epoch is kept at ``resume_path``
    (outside the DVC outputs); a rerun after a crash or a kill continues from it and writes the same
    bytes an uninterrupted run writes. The file is removed once the checkpoint is written.
    """
    from dvclive import Live

    tc = cfg.train
    threads = make_deterministic(tc.seed, tc.threads, tame_heap=uses_selective_scan(model_name))
    if tc.compile:  # the public call also sets the flag compiled graphs read
        torch.use_deterministic_algorithms(True)
    dev = device()
    train_ds = make_dataset(prepared, "train", cfg, augment=cfg.data.augment)
    val_ds = make_dataset(prepared, "val", cfg, augment=False)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise UbenchError(f"{prepared}: the train or val split is empty",
                          "use more images or other split fractions in params.yaml `split`")
    num_classes = train_ds.num_classes
    model = create_model(model_name, num_classes=num_classes, in_channels=3)
    pretrained = pretrained_record(model, model_name, tc)
    model = model.to(dev)
    memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
    if tc.channels_last:
        model = model.to(memory_format=memory_format)
    forward = torch.compile(model) if tc.compile else model  # state_dict always from `model`
    gen = torch.Generator().manual_seed(tc.seed)
    drop_last = len(train_ds) > tc.batch_size  # a batch of 1 breaks BatchNorm
    train_batches = SplitBatches(train_ds, tc.batch_size, device=dev, shuffle=True, generator=gen,
                                 drop_last=drop_last)
    val_batches = SplitBatches(val_ds, EVAL_BATCH, device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    total_iters = tc.epochs * len(train_batches)
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=total_iters, power=tc.poly_power)
    scaler = torch.amp.GradScaler(dev.type, enabled=tc.amp == "fp16")
    loss_fn = make_loss(cfg, num_classes)
    step = TrainStep(forward, loss_fn, opt, sched, scaler, dev, tc.amp, memory_format)

    fingerprint = platform_fingerprint(dev, threads)  # where this checkpoint and its log were computed
    run = {"best": {"val_iou": -1.0, "epoch": -1}, "best_state": None, "history": [], "epoch": 0}
    resume_key = _resume_key(model_name, prepared, cfg, protocol, fingerprint)
    if resume_path is not None and tc.resume_every > 0:
        run = _load_resume(resume_path, resume_key, model, opt, sched, scaler, gen) or run
    # The dvclive folder and the checkpoint land together (ubench.io.atomic_outputs): a failure
    # leaves neither, and never a new log beside an old checkpoint. The checkpoint goes last.
    with atomic_outputs() as staged:
        tmp_live = staged.dir(live_dir)
        live = Live(dir=str(tmp_live), dvcyaml=None, save_dvc_exp=False, report=None)
        for logged in run["history"]:  # epochs done before a resume: the same log lines again
            _log_epoch(live, logged)
        for epoch in range(run["epoch"], tc.epochs):
            train_ds.set_epoch(epoch)
            model.train()
            losses = []  # on the device: read once per epoch, not once per step
            bar = tqdm(train_batches, desc=f"{model_name} epoch {epoch + 1}/{tc.epochs}", leave=False,
                       mininterval=1.0)
            for batch in bar:
                losses.append(step(batch))
            epoch_losses = torch.stack(losses).cpu().numpy().astype(np.float64)
            bad = np.flatnonzero(~np.isfinite(epoch_losses))
            if bad.size:
                raise UbenchError(
                    f"{model_name}: the loss became {epoch_losses[bad[0]]} at epoch {epoch + 1}, step {bad[0] + 1}",
                    "lower train.lr in params.yaml, or check the prepared data for broken images",
                )
            rows = predict_scores(forward, val_batches, cfg.evaluate.threshold, dev, train_ds.class_names,
                                  hd95=False, amp=tc.amp)
            logged = {"train/loss": float(np.mean(epoch_losses)),
                      "val/iou": float(np.mean([r["iou"] for r in rows])),
                      "val/dice": float(np.mean([r["dice"] for r in rows])),
                      "lr": float(opt.param_groups[0]["lr"])}
            run["history"].append(logged)
            if logged["val/iou"] > run["best"]["val_iou"]:
                run["best"] = {"val_iou": logged["val/iou"], "val_dice": logged["val/dice"], "epoch": epoch + 1}
                run["best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            tqdm.write(f"{model_name}: epoch {epoch + 1}/{tc.epochs} loss {logged['train/loss']:.4f} "
                       f"val IoU {logged['val/iou']:.4f}")
            _log_epoch(live, logged)
            run["epoch"] = epoch + 1
            if resume_path is not None and tc.resume_every > 0 and run["epoch"] % tc.resume_every == 0 \
                    and run["epoch"] < tc.epochs:
                _save_resume(resume_path, resume_key, run, model, opt, sched, scaler, gen)
                _kill_point(run["epoch"])
        best = run["best"]
        live.summary["best/val_iou"] = best["val_iou"]
        live.summary["best/epoch"] = best["epoch"]
        live.summary["threads"] = threads
        live.summary["platform"] = fingerprint  # what ubench verify compares
        live.make_summary()
        # dvclive records wall-clock time in its summary; it is not a deterministic output.
        _strip_dvclive_volatile(tmp_live)
        assert run["best_state"] is not None and math.isfinite(best["val_iou"])
        best_doc = {
            "model": model_name, "state_dict": {k: v.cpu() for k, v in run["best_state"].items()},
            "epoch": best["epoch"], "num_classes": num_classes, "class_names": train_ds.class_names,
            "val_iou": best["val_iou"], "protocol": protocol, "platform": fingerprint,
            "train": as_dict(cfg.train), "data": as_dict(cfg.data), "pretrained": pretrained,
        }
        staged.file(ckpt_path, checkpoint_bytes(best_doc))
    if resume_path is not None:
        resume_path.unlink(missing_ok=True)
    return best


# A test hook: `UBENCH_KILL_AFTER_EPOCH=N` kills this process (SIGKILL, nothing cleaned up) right
# after epoch N's resume state is written, so tests/test_resume.py can interrupt a run at a known
# point without racing it.
KILL_ENV = "UBENCH_KILL_AFTER_EPOCH"


def _kill_point(epoch: int) -> None:
    if os.environ.get(KILL_ENV) == str(epoch):
        os.kill(os.getpid(), signal.SIGKILL)


def _log_epoch(live, logged: dict) -> None:
    for name in ("train/loss", "val/iou", "val/dice"):
        live.log_metric(name, logged[name])
    live.log_metric("lr", logged["lr"], plot=False)
    live.next_step()


# ---- resume state: everything the next epoch depends on, written atomically ----

def _resume_key(model_name: str, prepared: Path, cfg: Config, protocol: str, fingerprint: dict) -> str:
    """What a resume state must match to be continued: model, data (manifest, splits, array sizes),
    every training and data parameter but ``resume_every``, and the platform (bits differ elsewhere)."""
    train = {k: v for k, v in as_dict(cfg.train).items() if k != "resume_every"}
    files = {name: hashlib.sha256((prepared / name).read_bytes()).hexdigest()
             for name in ("manifest.json", "splits.json")}
    sizes = {name: (prepared / name).stat().st_size for name in ("images.npy", "masks.npy")}
    doc = {"model": model_name, "train": train, "data": as_dict(cfg.data), "protocol": protocol,
           "threshold": cfg.evaluate.threshold, "files": files, "sizes": sizes, "platform": fingerprint}
    return hashlib.sha256(json_dumps(doc).encode("utf-8")).hexdigest()


def _rng_states() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(_plain_number, np_state[2:])],
        "python": _python_random_state(),
    }


def _plain_number(x):
    return float(x) if isinstance(x, float) else int(x)


def _python_random_state() -> list:
    version, state, gauss = random.getstate()
    return [version, list(state), gauss]


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))


def _save_resume(path: Path, key: str, run: dict, model, opt, sched, scaler, gen) -> None:
    doc = {
        "key": key, "epoch": run["epoch"], "best": run["best"], "history": run["history"],
        "best_state": {k: v.cpu() for k, v in run["best_state"].items()} if run["best_state"] else None,
        "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(), "generator": gen.get_state(), "rng": _rng_states(),
    }
    # checkpoint_bytes: a value the safe loader refuses fails here, not silently at the next resume
    write_bytes_atomic(path, checkpoint_bytes(doc))


def _load_resume(path: Path, key: str, model, opt, sched, scaler, gen) -> dict | None:
    """The run dict to continue from, or None (no state, or one of another run: ignored)."""
    if not path.is_file():
        return None
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a resume state is a cache: an unreadable one only costs time
        tqdm.write(f"note: ignoring the unreadable resume state {path} ({type(exc).__name__}); starting over")
        return None
    if doc.get("key") != key:
        tqdm.write(f"note: {path} belongs to another configuration, data or platform; starting over")
        return None
    dev = next(iter(model.state_dict().values())).device
    model.load_state_dict(doc["model"])
    opt.load_state_dict(doc["optimizer"])
    sched.load_state_dict(doc["scheduler"])
    scaler.load_state_dict(doc["scaler"])
    gen.set_state(doc["generator"])
    _set_rng_states(doc["rng"])
    best_state = {k: v.to(dev) for k, v in doc["best_state"].items()} if doc["best_state"] else None
    tqdm.write(f"resuming {path} after epoch {doc['epoch']}")
    return {"best": doc["best"], "best_state": best_state, "history": doc["history"], "epoch": doc["epoch"]}


def _strip_dvclive_volatile(live_dir: Path) -> None:
    """Drop dvclive's non-deterministic extras so that two runs give identical bytes."""
    import json

    from ubench.io import write_json_atomic

    metrics = live_dir / "metrics.json"
    if metrics.exists():
        data = json.loads(metrics.read_text())
        data.pop("timestamp", None)
        write_json_atomic(metrics, data)
    for extra in ("report.html", "report.md", "dvc.yaml"):
        p = live_dir / extra
        if p.exists():
            p.unlink()
    shutil.rmtree(live_dir / "artifacts", ignore_errors=True)
