"""The training loop: U-Bench's protocol, nothing model- or dataset-specific inside.

SGD (lr, momentum, weight decay from params), polynomial decay per iteration, MONAI's DiceCELoss
(= U-Bench's 0.5·BCE + per-image soft Dice), deep-supervision losses averaged, best checkpoint by
validation IoU. Per-epoch loss and IoU go to dvclive. The checkpoint and the dvclive folder appear
only when training finishes: a crash or a NaN loss leaves neither behind.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ubench.checkpoint import checkpoint_bytes
from ubench.config import Config, as_dict
from ubench.errors import UbenchError
from ubench.inference import EVAL_BATCH, make_dataset, predict_scores
from ubench.io import atomic_outputs
from ubench.models import create_model
from ubench.models.pretrained import load_pretrained, pretrained_records
from ubench.runtime import device, make_deterministic, platform_fingerprint


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


def pretrained_record(model: torch.nn.Module, model_name: str, tc) -> dict:
    """Load the backbone weights U-Bench loads when ``train.pretrained`` asks for them; return what
    the checkpoint and metrics record: whether they were asked for, and each file's name and hash."""
    files = load_pretrained(model, model_name, tc.weights_dir) if tc.pretrained else []
    return {"requested": tc.pretrained, "has_backbone": bool(pretrained_records(model_name)), "files": files}


def train_model(model_name: str, prepared: Path, cfg: Config, ckpt_path: Path, live_dir: Path,
                protocol: str) -> dict:
    """Train ``model_name`` on a prepared dataset; write the best checkpoint and dvclive logs."""
    from dvclive import Live

    tc = cfg.train
    threads = make_deterministic(tc.seed, tc.threads)
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
    gen = torch.Generator().manual_seed(tc.seed)
    drop_last = len(train_ds) > tc.batch_size  # a batch of 1 breaks BatchNorm
    train_dl = DataLoader(train_ds, batch_size=tc.batch_size, shuffle=True, generator=gen,
                          num_workers=tc.num_workers, drop_last=drop_last)
    val_dl = DataLoader(val_ds, batch_size=EVAL_BATCH, shuffle=False, num_workers=tc.num_workers)
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    total_iters = tc.epochs * len(train_dl)
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=total_iters, power=tc.poly_power)
    loss_fn = make_loss(cfg, num_classes)

    best = {"val_iou": -1.0, "epoch": -1}
    fingerprint = platform_fingerprint(dev, threads)  # where this checkpoint and its log were computed
    best_state: dict | None = None  # serialised once, when written (not at every better epoch)
    # The dvclive folder and the checkpoint land together (ubench.io.atomic_outputs): a failure
    # leaves neither, and never a new log beside an old checkpoint. The checkpoint goes last.
    with atomic_outputs() as staged:
        tmp_live = staged.dir(live_dir)
        live = Live(dir=str(tmp_live), dvcyaml=None, save_dvc_exp=False, report=None)
        for epoch in range(tc.epochs):
            train_ds.set_epoch(epoch)
            model.train()
            losses = []
            bar = tqdm(train_dl, desc=f"{model_name} epoch {epoch + 1}/{tc.epochs}", leave=False,
                       mininterval=1.0)
            for step, batch in enumerate(bar):
                out = model(batch["image"].to(dev))
                loss = loss_fn(out, batch["mask"].to(dev))
                if not torch.isfinite(loss):
                    raise UbenchError(
                        f"{model_name}: the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}",
                        "lower train.lr in params.yaml, or check the prepared data for broken images",
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            rows = predict_scores(model, val_dl, cfg.evaluate.threshold, dev, train_ds.class_names)
            val_iou = float(np.mean([r["iou"] for r in rows]))
            val_dice = float(np.mean([r["dice"] for r in rows]))
            train_loss = float(np.mean(losses))
            live.log_metric("train/loss", train_loss)
            live.log_metric("val/iou", val_iou)
            live.log_metric("val/dice", val_dice)
            live.log_metric("lr", float(opt.param_groups[0]["lr"]), plot=False)
            if val_iou > best["val_iou"]:
                best = {"val_iou": val_iou, "val_dice": val_dice, "epoch": epoch + 1}
                state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                best_state = {
                    "model": model_name, "state_dict": state, "epoch": epoch + 1,
                    "num_classes": num_classes, "class_names": train_ds.class_names,
                    "val_iou": val_iou, "protocol": protocol, "platform": fingerprint,
                    "train": as_dict(cfg.train), "data": as_dict(cfg.data),
                    "pretrained": pretrained,
                }
            tqdm.write(f"{model_name}: epoch {epoch + 1}/{tc.epochs} loss {train_loss:.4f} "
                       f"val IoU {val_iou:.4f}")
            live.next_step()
        live.summary["best/val_iou"] = best["val_iou"]
        live.summary["best/epoch"] = best["epoch"]
        live.summary["threads"] = threads
        live.summary["platform"] = fingerprint  # what ubench verify compares
        live.make_summary()
        # dvclive records wall-clock time in its summary; it is not a deterministic output.
        _strip_dvclive_volatile(tmp_live)
        assert best_state is not None and math.isfinite(best["val_iou"])
        staged.file(ckpt_path, checkpoint_bytes(best_state))
    return best


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
