"""Image transforms built from ``cfg.INPUT``, in Dassl's order and with Dassl's choice names.

For CoOp's configs (``INPUT.TRANSFORMS = [random_resized_crop, random_flip, normalize]``, bicubic) this
gives: train = RandomResizedCrop(SIZE, RRCROP_SCALE) -> HFlip -> ToTensor -> Normalize; test =
Resize(max(SIZE), aspect kept) -> CenterCrop(SIZE) -> ToTensor -> Normalize (Dassl's test transform).
Each step prints one ``+ ...`` line, as Dassl does, so logs show what ran.
"""

import random

import torch
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from engine.errors import ConfigError

__all__ = ["build_transform", "INTERPOLATION_MODES", "AVAI_CHOICES", "Cutout", "GaussianNoise", "InstanceNorm"]

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

AVAI_CHOICES = (
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",  # test pipelines always centre-crop; accepted for Dassl configs that list it
    "cutout",
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
)


class RandomTranslation:
    """With probability ``p``, enlarge to 1.125x and randomly crop back to ``(h, w)``; else resize to it."""

    def __init__(self, height, width, p=0.5, interpolation=InterpolationMode.BILINEAR):
        self.height, self.width, self.p, self.interpolation = height, width, p, interpolation

    def __call__(self, img):
        if random.uniform(0, 1) > self.p:
            return T.functional.resize(img, [self.height, self.width], self.interpolation)
        new_h, new_w = int(round(self.height * 1.125)), int(round(self.width * 1.125))
        img = T.functional.resize(img, [new_h, new_w], self.interpolation)
        top = int(round(random.uniform(0, new_h - self.height)))
        left = int(round(random.uniform(0, new_w - self.width)))
        return T.functional.crop(img, top, left, self.height, self.width)


class Cutout:
    """Zero ``n_holes`` random ``length x length`` squares of a CHW tensor (centres may lie on the border)."""

    def __init__(self, n_holes=1, length=16):
        self.n_holes, self.length = n_holes, length

    def __call__(self, img):
        _, h, w = img.shape
        mask = torch.ones(h, w, dtype=img.dtype)
        for _ in range(self.n_holes):
            y, x = int(torch.randint(h, ())), int(torch.randint(w, ()))
            y1, y2 = max(0, y - self.length // 2), min(h, y + self.length // 2)
            x1, x2 = max(0, x - self.length // 2), min(w, x + self.length // 2)
            mask[y1:y2, x1:x2] = 0
        return img * mask


class GaussianNoise:
    """With probability ``p``, add N(mean, std) noise to a tensor."""

    def __init__(self, mean=0.0, std=0.15, p=0.5):
        self.mean, self.std, self.p = mean, std, p

    def __call__(self, img):
        if random.uniform(0, 1) > self.p:
            return img
        return img + torch.randn_like(img) * self.std + self.mean


class InstanceNorm:
    """Normalise each channel of a CHW tensor by its own mean and standard deviation."""

    def __call__(self, img):
        mean = img.mean(dim=(1, 2), keepdim=True)
        std = img.std(dim=(1, 2), keepdim=True)
        return (img - mean) / (std + 1e-8)


def _check(cfg, choices):
    for choice in choices:
        if choice not in AVAI_CHOICES:
            raise ConfigError(f"unknown INPUT.TRANSFORMS choice {choice!r}; available: {', '.join(AVAI_CHOICES)}")
    if cfg.INPUT.INTERPOLATION not in INTERPOLATION_MODES:
        raise ConfigError(
            f"unknown INPUT.INTERPOLATION {cfg.INPUT.INTERPOLATION!r}; available: {', '.join(INTERPOLATION_MODES)}"
        )
    size = tuple(cfg.INPUT.SIZE)
    if len(size) != 2 or min(size) <= 0:
        raise ConfigError(f"INPUT.SIZE must be two positive ints (height, width); got {cfg.INPUT.SIZE!r}")
    return size


def build_transform(cfg, is_train=True, choices=None):
    """The train or test transform for ``cfg.INPUT`` (``None`` if ``INPUT.NO_TRANSFORM``).

    ``choices`` overrides ``INPUT.TRANSFORMS``. Unknown choices or interpolation raise ConfigError.
    """
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    choices = list(cfg.INPUT.TRANSFORMS if choices is None else choices)
    size = _check(cfg, choices)
    normalize = T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    if is_train:
        return _build_train(cfg, choices, size, normalize)
    return _build_test(cfg, choices, size, normalize)


def _build_train(cfg, choices, size, normalize):
    print("Building transform_train")
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    inp = cfg.INPUT
    tfm = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        print(f"+ resize to {size[0]}x{size[1]}")
        tfm.append(T.Resize(size, interpolation=interp))
    if "random_translation" in choices:
        print("+ random translation")
        tfm.append(RandomTranslation(size[0], size[1], interpolation=interp))
    if "random_crop" in choices:
        print(f"+ random crop (padding = {inp.CROP_PADDING})")
        tfm.append(T.RandomCrop(size, padding=inp.CROP_PADDING))
    if "random_resized_crop" in choices:
        scale = tuple(inp.RRCROP_SCALE)
        print(f"+ random resized crop (size={size}, scale={scale})")
        tfm.append(T.RandomResizedCrop(size, scale=scale, interpolation=interp))
    if "random_flip" in choices:
        print("+ random flip")
        tfm.append(T.RandomHorizontalFlip())
    policies = {
        "imagenet_policy": T.AutoAugmentPolicy.IMAGENET,
        "cifar10_policy": T.AutoAugmentPolicy.CIFAR10,
        "svhn_policy": T.AutoAugmentPolicy.SVHN,
    }
    for name, policy in policies.items():
        if name in choices:
            print(f"+ {name.replace('_', ' ')}")
            tfm.append(T.AutoAugment(policy))
    if "randaugment" in choices:
        print(f"+ randaugment (n={inp.RANDAUGMENT_N}, m={inp.RANDAUGMENT_M})")
        tfm.append(T.RandAugment(num_ops=inp.RANDAUGMENT_N, magnitude=inp.RANDAUGMENT_M))
    if "colorjitter" in choices:
        print("+ color jitter")
        tfm.append(
            T.ColorJitter(
                brightness=inp.COLORJITTER_B,
                contrast=inp.COLORJITTER_C,
                saturation=inp.COLORJITTER_S,
                hue=inp.COLORJITTER_H,
            )
        )
    if "randomgrayscale" in choices:
        print("+ random gray scale")
        tfm.append(T.RandomGrayscale(p=inp.RGS_P))
    if "gaussian_blur" in choices:
        print(f"+ gaussian blur (kernel={inp.GB_K})")
        tfm.append(T.RandomApply([T.GaussianBlur(inp.GB_K)], p=inp.GB_P))
    print("+ to torch tensor of range [0, 1]")
    tfm.append(T.ToTensor())
    if "cutout" in choices:
        print(f"+ cutout (n_holes={inp.CUTOUT_N}, length={inp.CUTOUT_LEN})")
        tfm.append(Cutout(inp.CUTOUT_N, inp.CUTOUT_LEN))
    if "normalize" in choices:
        print(f"+ normalization (mean={inp.PIXEL_MEAN}, std={inp.PIXEL_STD})")
        tfm.append(normalize)
    if "gaussian_noise" in choices:
        print(f"+ gaussian noise (mean={inp.GN_MEAN}, std={inp.GN_STD})")
        tfm.append(GaussianNoise(inp.GN_MEAN, inp.GN_STD))
    if "instance_norm" in choices:
        print("+ instance normalization")
        tfm.append(InstanceNorm())
    return T.Compose(tfm)


def _build_test(cfg, choices, size, normalize):
    print("Building transform_test")
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    # An int size resizes the smaller edge and keeps the aspect ratio (CoOp's evaluation protocol).
    print(f"+ resize the smaller edge to {max(size)}")
    tfm = [T.Resize(max(size), interpolation=interp)]
    print(f"+ {size[0]}x{size[1]} center crop")
    tfm.append(T.CenterCrop(size))
    print("+ to torch tensor of range [0, 1]")
    tfm.append(T.ToTensor())
    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfm.append(normalize)
    if "instance_norm" in choices:
        print("+ instance normalization")
        tfm.append(InstanceNorm())
    return T.Compose(tfm)
