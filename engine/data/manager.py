"""``DataManager``: dataset + transforms + loaders, and the ``DatasetWrapper`` that reads one image.

Dassl's interface with three fixes: ``drop_last`` is never set, so no few-shot
image is skipped (PromptSRC #22: EuroSAT 1-shot at batch 4 trained on 8 of 10 images); an empty split
raises DatasetError naming the dataset folder and the split instead of a bare ``assert``; an image
that cannot be read raises DatasetError naming the file, also from a loader worker process.
"""

import torch
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from engine.data.samplers import build_sampler
from engine.data.transforms import INTERPOLATION_MODES, build_transform
from engine.errors import ConfigError, DatasetError
from engine.registry import build_dataset
from engine.utils import read_image

__all__ = ["DataManager", "DatasetWrapper", "build_data_loader"]


class DatasetWrapper(Dataset):
    """Reads ``data_source[i]`` and returns ``{img, label, domain, impath, index}`` (+ ``img2``... / ``img0``)."""

    def __init__(self, cfg, data_source, transform=None, is_train=False):
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform  # a transform, or a list/tuple of them (-> img, img2, img3, ...)
        self.is_train = is_train
        # Several augmented views per image only when training (Dassl's K_TRANSFORMS).
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise ConfigError(
                f"DATALOADER.K_TRANSFORMS={self.k_tfm} needs a transform, but the transform is None "
                f"(INPUT.NO_TRANSFORM is set)"
            )
        interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
        img0_steps = [T.Resize(cfg.INPUT.SIZE, interpolation=interp), T.ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            img0_steps.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(img0_steps)

    def __len__(self):
        return len(self.data_source)

    def __getitem__(self, idx):
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        img0 = read_image(item.impath)  # DatasetError naming the file if missing or corrupt
        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                output["img" if i == 0 else f"img{i + 1}"] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _transform_image(self, tfm, img0):
        views = [tfm(img0) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views


def _one_line(exc):
    """The original one-line message of a DatasetError re-raised by a DataLoader worker."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    marker = "DatasetError: "
    return last.split(marker, 1)[1] if marker in last else last


def _epoch_seed(seed, epoch):
    """A 63-bit seed that is a fixed function of (run seed, epoch)."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 1) % (1 << 63)


class OneLineErrorLoader(DataLoader):
    """A DataLoader whose worker errors of type DatasetError keep their one-line message.

    With workers, the loader owns a ``torch.Generator``: torch draws the workers' base seed from it
    instead of from the global RNG, so creating workers never shifts the training's random stream.
    ``set_epoch(e)`` reseeds it from (``seed``, e); a train loader's workers are not persistent, so
    each epoch's workers (and their crops and flips) depend only on (seed, epoch) and a resumed run
    repeats them exactly.
    """

    def __init__(self, *args, seed=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed = seed

    def set_epoch(self, epoch):
        if self.generator is not None and self.seed is not None:
            self.generator.manual_seed(_epoch_seed(self.seed, epoch))

    def __iter__(self):
        iterator = super().__iter__()
        if self.num_workers == 0:
            return iterator
        return self._clean(iterator)

    @staticmethod
    def _clean(iterator):
        try:
            yield from iterator
        except DatasetError as exc:
            # Workers re-raise as DatasetError("Caught DatasetError in DataLoader worker ...<traceback>").
            raise DatasetError(_one_line(exc)) from None


def build_data_loader(
    cfg,
    sampler_type="SequentialSampler",
    data_source=None,
    batch_size=64,
    n_domain=0,
    n_ins=2,
    tfm=None,
    is_train=True,
    dataset_wrapper=None,
    name="data source",
):
    """A DataLoader over ``dataset_wrapper(cfg, data_source, transform=tfm, is_train=is_train)``.

    Never drops the last partial batch; ``name`` (e.g. ``"split 'test' of DATA/toyshapes"``) words
    the error for an empty ``data_source``.
    """
    if not data_source:
        raise DatasetError(f"{name} is empty; check DATASET.ROOT, the split file and DATASET.SUBSAMPLE_CLASSES")
    if dataset_wrapper is None:
        dataset_wrapper = DatasetWrapper
    sampler = build_sampler(
        sampler_type, cfg=cfg, data_source=data_source, batch_size=batch_size, n_domain=n_domain, n_ins=n_ins
    )
    num_workers = cfg.DATALOADER.NUM_WORKERS
    generator = seed = None
    if num_workers > 0:
        # Without a fixed SEED the run is not reproducible anyway; initial_seed() draws nothing.
        seed = cfg.SEED if cfg.SEED >= 0 else torch.initial_seed()
        generator = torch.Generator()
        generator.manual_seed(_epoch_seed(seed, 0))
    return OneLineErrorLoader(
        dataset_wrapper(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=False,
        pin_memory=bool(cfg.USE_CUDA and torch.cuda.is_available()),
        # Persistent workers would carry their random state from epoch to epoch, which a resume cannot
        # restore; evaluation draws nothing random, so its workers may persist.
        persistent_workers=num_workers > 0 and not is_train,
        generator=generator,
        seed=seed,
    )


class DataManager:
    """The dataset named by ``cfg.DATASET.NAME``, its transforms, and its train/val/test loaders."""

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None):
        dataset = build_dataset(cfg)

        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train
        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        folder = dataset.dataset_dir or cfg.DATASET.NAME
        dl = cfg.DATALOADER

        def loader(split, data, settings, tfm, is_train):
            return build_data_loader(
                cfg,
                sampler_type=settings.SAMPLER,
                data_source=data,
                batch_size=settings.BATCH_SIZE,
                n_domain=getattr(settings, "N_DOMAIN", 0),
                n_ins=getattr(settings, "N_INS", 2),
                tfm=tfm,
                is_train=is_train,
                dataset_wrapper=dataset_wrapper,
                name=f"{cfg.DATASET.NAME} split '{split}' (dataset folder {folder})",
            )

        self.train_loader_x = loader("train_x", dataset.train_x, dl.TRAIN_X, tfm_train, True)
        self.train_loader_u = None
        if dataset.train_u:
            settings_u = dl.TRAIN_X if dl.TRAIN_U.SAME_AS_X else dl.TRAIN_U
            self.train_loader_u = loader("train_u", dataset.train_u, settings_u, tfm_train, True)
        self.val_loader = None
        if dataset.val:
            self.val_loader = loader("val", dataset.val, dl.TEST, tfm_test, False)
        self.test_loader = loader("test", dataset.test, dl.TEST, tfm_test, False)

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset
        self.tfm_train = tfm_train
        self.tfm_test = tfm_test
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self):
        return self._num_classes

    @property
    def num_source_domains(self):
        return self._num_source_domains

    @property
    def lab2cname(self):
        return self._lab2cname

    def show_dataset_summary(self, cfg):
        """Print Dassl's summary table (dataset, domains, class and split sizes)."""
        table = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            table.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            table.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        table.append(["# classes", f"{self.num_classes:,}"])
        table.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            table.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            table.append(["# val", f"{len(self.dataset.val):,}"])
        table.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(table))
