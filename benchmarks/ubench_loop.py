"""A re-creation of U-Bench's training loop and data path, used as the *reference* in speed benchmarks.

Written from reading U-Bench's code (``main.py``, ``dataloader/dataloader.py``, ``dataloader/dataset.py``,
``utils/losses.py``, ``utils/metrics_medpy.py``, ``utils/util.py``); not a copy of it. What matters here is
that each training step costs what U-Bench's costs, not bit-equal numerics.

What it re-creates, per training step of ``main.py: train`` (binary case, ``do_deeps`` off unless the model
returns a list/tuple):

* Data on disk, U-Bench's ``dataloader/dataset.py: MedicalDataSets`` layout (the one for busi / bus / isic18 /
  tuscui): ``<base_dir>/images/<case>.png`` (RGB), ``<base_dir>/masks/0/<case>.png`` (grey, 0/255) and
  ``<base_dir>/train.txt`` / ``val.txt`` listing the case names. ``write_png_dataset`` writes it.
* ``MedicalDataSets.__getitem__``: decodes both PNGs per item, runs the train transform, then
  ``image.astype(float32).transpose(2, 0, 1) / 255`` (a second division by 255 *after* Normalize: U-Bench's
  quirk, kept), ``label.astype(float32).transpose(2, 0, 1) / 255`` and ``label[label > 0] = 1``; returns a
  dict with ``image``, ``label`` and ``case`` (the default collate stacks the arrays and lists the names).
* ``dataloader/dataloader.py: getDataloader``'s train transform, an albumentations 1.x ``Compose`` of
  ``RandomRotate90()`` (p=0.5, k uniform in 0..3), ``Flip()`` (p=0.5, d uniform in {-1, 0, 1}: both axes,
  vertical, horizontal), ``Resize(img_size, img_size)`` (bilinear image, nearest mask; albumentations returns
  the array untouched when it already has that size) and ``Normalize()`` (ImageNet mean/std, max pixel 255).
  Written here with numpy and PIL, drawing from Python's ``random`` as albumentations 1.x does.
* ``getDataloader``'s train ``DataLoader``: ``batch_size=args.batch_size, shuffle=True, num_workers=4,
  pin_memory=False, worker_init_fn`` (seeds ``random`` with seed + worker id), ``drop_last`` and
  ``persistent_workers`` left at their defaults (False). The loader is built once per ``train`` call, but
  since its workers are not persistent, every epoch's ``enumerate(trainloader)`` forks a fresh set of
  workers and shuts them down at the end of the epoch; this module does the same (one loader, one
  ``iter()`` per epoch).
* ``main.py: train``: ``optim.SGD(lr=base_lr, momentum=0.9, weight_decay=1e-4)``; ``BCEDiceLoss``
  (``utils/losses.py``: ``0.5 * BCE-with-logits + (1 - mean per-sample soft Dice)``, smooth 1e-5), written
  here in torch; per step: batch ``.to(device)``, forward, loss, ``get_metrics`` from
  ``utils/metrics_medpy.py`` on the training batch (sigmoid, copy to the CPU, threshold at 0.5, medpy
  ``dc``, IoU by numpy, medpy ``recall``, ``precision``, ``specificity``, pixel accuracy, F1: all seven
  computed though ``train`` keeps only IoU and Dice) *before* ``zero_grad`` / ``backward`` / ``step``; then
  the poly LR ``base_lr * (1 - iter_num / max_iterations) ** 0.9`` written into every param group, with
  ``max_iterations = len(trainloader) * max_epochs``; then ``loss.item()`` and the ``AverageMeter`` updates
  (``utils/util.py``) for loss and IoU. Per epoch: ``model.train()``, eight fresh meters, and after the
  epoch the ``writer.add_scalar`` calls and the ``logger.info`` line.
* Deep supervision: when the model returns a list/tuple, the loss is ``main.py: deep_supervision_loss`` (the
  criterion averaged over the outputs, each resized bilinearly, align_corners=True, to the label's size when
  it differs) and the metrics use the last output, as ``train`` does with ``do_deeps``. (U-Bench resizes to
  ``label_batch.shape[1:]``, which includes the channel axis and would fail on a 4-D output; here the
  spatial size is used.) U-Bench only does this when ``--do_deeps`` is given; here it follows the output.

What U-Bench does at import, exposed as ``ubench_process_settings`` (a context manager, not done at import
here, since the benchmark sets threads itself): ``main.py`` sets ``OMP/OPENBLAS/MKL/VECLIB/NUMEXPR_NUM_THREADS
= 1`` before importing torch, ``torch.set_num_threads(1)`` and
``torch.multiprocessing.set_sharing_strategy('file_system')``; ``parse_arguments`` calls ``seed_torch``, which
seeds, sets ``cudnn.deterministic = True``, ``cudnn.benchmark = False``,
``torch.use_deterministic_algorithms(True, warn_only=True)`` and ``CUBLAS_WORKSPACE_CONFIG=:4096:8``. The
context manager applies the thread count, sharing strategy and determinism flags and restores them on exit;
the ``*_NUM_THREADS`` variables are not set, since they only act before the thread pools start.

What it leaves out, and why:

* The per-epoch validation pass (``valloader``: batch 1, one worker, full ``get_metrics``), the
  checkpoint ``torch.save`` calls, the tqdm bar over epochs, the loss plot and the CSV row: per-epoch or
  per-run costs, not part of a training step, which is what the benchmark compares.
* TensorBoard: U-Bench's ``SummaryWriter`` is replaced by a no-op writer (the ``add_scalar`` calls are still
  made). U-Bench's logger writes to a file and stderr; here the line is formatted and sent to this module's
  logger, which prints nothing unless configured. wandb is imported by U-Bench but not used in ``train``.
* Decoding uses PIL (cv2 is not installed): RGB instead of cv2's BGR channel order (same cost, model trained
  from scratch), and libpng through PIL rather than through OpenCV. PIL's bilinear resize also filters over
  the whole source footprint when shrinking where cv2's ``INTER_LINEAR`` samples 2x2; same order of cost.
* The model-specific ``img_size = 224`` override in ``getDataloader`` (the caller passes ``img_size``), the
  resume path, and the other datasets' classes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from medpy.metric.binary import dc, precision, recall, specificity
from PIL import Image
from torch.utils.data import DataLoader, Dataset

__all__ = ["UBENCH_NUM_WORKERS", "ubench_process_settings", "ubench_reference_epochs", "write_png_dataset"]

log = logging.getLogger(__name__)

UBENCH_NUM_WORKERS = 4  # dataloader/dataloader.py: getDataloader, the train DataLoader
UBENCH_SEED = 41  # main.py: parse_arguments, --seed default
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # albumentations Normalize() defaults
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# ----------------------------------------------------------------------------------------------- data on disk

def write_png_dataset(images: np.ndarray, masks: np.ndarray, root: Path) -> Path:
    """images uint8 (N,H,W,3), masks uint8 (N,H,W) with values {0,1} or {0,255}; writes U-Bench's layout under root;
    returns the dataset dir U-Bench's loader would be given."""
    images = np.asarray(images)
    masks = np.asarray(masks)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N,H,W,3), got {images.dtype} {images.shape}")
    if masks.shape != images.shape[:3]:
        raise ValueError(f"masks must be (N,H,W) = {images.shape[:3]}, got {masks.shape}")
    base = Path(root) / "busi"
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "masks" / "0").mkdir(parents=True, exist_ok=True)
    # U-Bench's masks are 0/255 greyscale PNGs; a {0,1} mask is scaled up to that
    binary = (masks > 0).astype(np.uint8) * 255
    cases = [f"case_{i:05d}" for i in range(len(images))]
    for case, img, msk in zip(cases, images, binary):
        Image.fromarray(img).save(base / "images" / f"{case}.png")
        Image.fromarray(msk).save(base / "masks" / "0" / f"{case}.png")
    listing = "".join(f"{c}\n" for c in cases)
    (base / "train.txt").write_text(listing)
    (base / "val.txt").write_text(listing)  # U-Bench's layout has one; the training loop here never reads it
    return base


# ------------------------------------------------------------------------------------ augmentation (numpy/PIL)

def _resize(arr: np.ndarray, size: int, resample: Image.Resampling) -> np.ndarray:
    if arr.shape[0] == size and arr.shape[1] == size:
        return arr  # albumentations' resize returns the input as is at the target size
    if arr.ndim == 3 and arr.shape[2] == 1:
        return _resize(arr[..., 0], size, resample)[..., None]
    return np.asarray(Image.fromarray(arr).resize((size, size), resample=resample))


def _train_transform(image: np.ndarray, mask: np.ndarray, img_size: int) -> tuple[np.ndarray, np.ndarray]:
    """RandomRotate90() -> Flip() -> Resize(img_size, img_size) -> Normalize(), as in getDataloader's train_transform."""
    if random.random() < 0.5:  # RandomRotate90, p=0.5
        k = random.randint(0, 3)
        image = np.ascontiguousarray(np.rot90(image, k))
        mask = np.ascontiguousarray(np.rot90(mask, k))
    if random.random() < 0.5:  # Flip, p=0.5
        d = random.randint(-1, 1)
        sl = {-1: (slice(None, None, -1), slice(None, None, -1)), 0: (slice(None, None, -1), slice(None)),
              1: (slice(None), slice(None, None, -1))}[d]
        image = np.ascontiguousarray(image[sl])
        mask = np.ascontiguousarray(mask[sl])
    image = _resize(image, img_size, Image.Resampling.BILINEAR)
    mask = _resize(mask, img_size, Image.Resampling.NEAREST)
    # Normalize(): (x - 255*mean) / (255*std) in float32
    image = (image.astype(np.float32) - _IMAGENET_MEAN * 255.0) * np.reciprocal(_IMAGENET_STD * 255.0)
    return image, mask


class UBenchMedicalDataSet(Dataset):
    """dataloader/dataset.py: MedicalDataSets, mode="train", decoding with PIL instead of cv2."""

    def __init__(self, base_dir: Path, img_size: int, list_file: str = "train.txt"):
        self.base_dir = Path(base_dir)
        self.img_size = img_size
        with open(self.base_dir / list_file) as f:
            self.cases = [line.replace("\n", "") for line in f.readlines()]

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, idx: int) -> dict:
        case = self.cases[idx]
        with Image.open(self.base_dir / "images" / f"{case}.png") as im:
            image = np.array(im.convert("RGB"))  # cv2.imread(path): (H,W,3) uint8
        with Image.open(self.base_dir / "masks" / "0" / f"{case}.png") as im:
            label = np.array(im.convert("L"))[..., None]  # cv2.imread(path, IMREAD_GRAYSCALE)[..., None]
        image, label = _train_transform(image, label, self.img_size)
        image = image.astype("float32").transpose(2, 0, 1) / 255  # second /255 after Normalize, as U-Bench
        label = label.astype("float32").transpose(2, 0, 1) / 255
        label[label > 0] = 1
        return {"image": image, "label": label, "case": case}


class _SeedWorker:
    """getDataloader's worker_init_fn: random.seed(args.seed + worker_id) (picklable form)."""

    def __init__(self, seed: int):
        self.seed = seed

    def __call__(self, worker_id: int) -> None:
        random.seed(self.seed + worker_id)


# ---------------------------------------------------------------------------------------- loss, metrics, meters

def _bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """utils/losses.py: BCEDiceLoss.forward."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    n = target.size(0)
    prob = torch.sigmoid(logits).view(n, -1)
    flat = target.view(n, -1)
    smooth = 1e-5
    dice_per_sample = (2.0 * (prob * flat).sum(1) + smooth) / (prob.sum(1) + flat.sum(1) + smooth)
    return 0.5 * bce + (1.0 - dice_per_sample.sum() / n)


def _deep_supervision_loss(outputs, label: torch.Tensor) -> torch.Tensor:
    """main.py: deep_supervision_loss (resizing to the label's spatial size, see the module docstring)."""
    total = 0.0
    for out in outputs:
        if out.shape[2:] != label.shape[2:]:
            out = F.interpolate(out, size=label.shape[2:], mode="bilinear", align_corners=True)
        total = total + _bce_dice_loss(out, label)
    return total / len(outputs)


def _train_metrics(logits: torch.Tensor, target: torch.Tensor) -> tuple:
    """utils/metrics_medpy.py: get_metrics -> (iou, dice, SE, PC, F1, SP, ACC), on the CPU with medpy."""
    pred = (torch.sigmoid(logits).cpu().detach().numpy() > 0.5).astype(np.uint8)
    gt = target.cpu().detach().numpy().astype(np.uint8)
    dice = dc(pred, gt)
    inter = np.sum(pred * gt)
    union = np.sum(pred) + np.sum(gt) - inter
    iou = inter / union if union > 0 else 0
    se = recall(pred, gt)
    pc = precision(pred, gt)
    sp = specificity(pred, gt)
    acc = float(np.sum((pred > 0.5) == (gt == np.max(gt)))) / float(pred.size)  # get_accuracy
    f1 = 2 * (pc * se) / (pc + se) if (pc + se) > 0 else 0
    return iou, dice, se, pc, f1, sp, acc


class _AverageMeter:
    """utils/util.py: AverageMeter."""

    def __init__(self):
        self.val = self.avg = self.sum = 0
        self.count = 0

    def update(self, val, n: int = 1) -> None:
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


class _NullWriter:
    """Stands in for U-Bench's torch.utils.tensorboard.SummaryWriter: the calls are made, nothing is written."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------- process settings

@contextlib.contextmanager
def ubench_process_settings(num_threads: int = 1, deterministic: bool = True):
    """What U-Bench's main.py does at import (torch.set_num_threads(1), 'file_system' sharing) and seed_torch's
    determinism flags; restored on exit. The *_NUM_THREADS variables U-Bench sets before importing torch are
    not set: they only act before the thread pools start."""
    saved = (torch.get_num_threads(), torch.multiprocessing.get_sharing_strategy(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.set_num_threads(num_threads)
    torch.multiprocessing.set_sharing_strategy("file_system")
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.multiprocessing.set_sharing_strategy(saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
        torch.use_deterministic_algorithms(saved[4], warn_only=saved[5])


# ----------------------------------------------------------------------------------------------- the loop

def ubench_reference_epochs(model: torch.nn.Module, data_dir: Path, *, img_size: int, batch_size: int,
                            steps: int, num_workers: int = UBENCH_NUM_WORKERS, device: torch.device | str = "cpu",
                            lr: float = 0.01) -> dict:
    """Run U-Bench's training loop for `steps` optimizer steps in total (re-creating the loader each epoch as U-Bench
    does; an epoch may be cut short when `steps` is reached), return {"steps": n, "seconds": wall time, "loss": last loss}.

    The loader is built once and iterated once per epoch, as main.py: train does; its workers are not persistent,
    so each epoch forks and joins a new set. The clock starts before the dataset and loader are built and stops
    after the last step's workers are shut down (and, on CUDA, after a synchronize)."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    device = torch.device(device)
    model.to(device)
    is_cuda = device.type == "cuda"
    if is_cuda:
        torch.cuda.synchronize(device)

    start = time.perf_counter()
    dataset = UBenchMedicalDataSet(data_dir, img_size)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, pin_memory=False,
                        worker_init_fn=_SeedWorker(UBENCH_SEED))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=0.0001)
    writer = _NullWriter()
    per_epoch = len(loader)
    max_epochs = math.ceil(steps / per_epoch)
    max_iterations = per_epoch * max_epochs
    iter_num = 0
    last_loss = float("nan")

    for epoch in range(max_epochs):
        model.train()
        meters = {k: _AverageMeter() for k in ("loss", "iou", "val_loss", "val_iou", "SE", "PC", "F1", "ACC")}
        batches = iter(loader)  # non-persistent workers: forked here, every epoch
        for batch in batches:
            images, labels = batch["image"].to(device), batch["label"].to(device)
            outputs = model(images)
            if isinstance(outputs, (list, tuple)):
                loss = _deep_supervision_loss(outputs, labels)
                outputs = outputs[-1]
            else:
                loss = _bce_dice_loss(outputs, labels)
            iou, _dice, *_ = _train_metrics(outputs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            lr_now = lr * (1.0 - iter_num / max_iterations) ** 0.9
            for group in optimizer.param_groups:
                group["lr"] = lr_now
            iter_num += 1
            last_loss = loss.item()
            meters["loss"].update(last_loss, images.size(0))
            meters["iou"].update(iou, images.size(0))
            if iter_num >= steps:
                break
        del batches  # joins this epoch's workers (an exhausted iterator has already done so)

        for tag, key in (("Train/Loss", "loss"), ("Train/IOU", "iou"), ("Val/Loss", "val_loss"),
                         ("Val/IOU", "val_iou"), ("Val/SE", "SE"), ("Val/PC", "PC"), ("Val/F1", "F1"),
                         ("Val/ACC", "ACC")):
            writer.add_scalar(tag, meters[key].avg, epoch)
        log.info("epoch [%d/%d]  train_loss: %.4f, train_iou: %.4f", epoch, max_epochs, meters["loss"].avg,
                 meters["iou"].avg)
        if iter_num >= steps:
            break

    if is_cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    writer.close()
    return {"steps": iter_num, "seconds": seconds, "loss": last_loss}


# ----------------------------------------------------------------------------------------------- smoke run

if __name__ == "__main__":
    import tempfile

    from ubench.models import create_model

    rng = np.random.default_rng(0)
    n, size = 16, 64
    imgs = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    msks = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n):  # one random disc per image
        cy, cx, r = rng.integers(16, 48), rng.integers(16, 48), rng.integers(6, 16)
        msks[i] = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)

    torch.manual_seed(0)  # 16 items in batches of 6: 3 steps in epoch 0, then epoch 1 cut short after 1
    net = create_model("unet", num_classes=1, in_channels=3)
    with tempfile.TemporaryDirectory() as tmp, ubench_process_settings(num_threads=1):
        data = write_png_dataset(imgs, msks, Path(tmp))
        result = ubench_reference_epochs(net, data, img_size=size, batch_size=6, steps=4, num_workers=2)
    print(result)
