"""Grad-CAM of a CLIP image tower for scores built from its image features (no plotting here).

Which activations are used:

* **ViT**: the patch tokens *entering* the last transformer block, i.e. the residual stream after block
  L-1. The tokens leaving the last block cannot be used: CLIP pools the class token only, so the patch tokens
  there get zero gradient; entering the last block, they reach the class token through that block's
  attention. The ``h x w`` patch tokens (class token and any appended vision prompts dropped) are laid out
  on the patch grid as a ``[W, h, w]`` map.
* **ResNet**: the output of the last conv stage ``visual.layer4``.

How a map is made from activation ``A`` and the score's gradient ``G`` (both ``[C, h, w]``), ``variant``:

* ``"token"`` (default for ViTs, the token-gradient variant): ``ReLU(sum_c G[c, p] * A[c, p])`` at each
  token ``p``: every token weighted by its own gradient. On the toy student it put 2-3x more of the map on
  the object than ``"gradcam"`` did (a spread-out score gradient averages away in channel means);
* ``"gradcam"`` (default for ResNets, Selvaraju et al.): channel weights ``mean_p G[c, p]``, map
  ``ReLU(sum_c weight[c] * A[c, p])``.

Both are captured by a hook that hands the encoder a detached copy of the activation which requires grad,
so gradients exist although every CLIP weight is frozen and the input image needs none.
"""

import contextlib
from typing import NamedTuple

import torch
import torch.nn.functional as F

from engine.errors import ConfigError

__all__ = ["ActivationCapture", "CamResult", "grad_cam", "token_cam", "VARIANTS", "cams_for_scores"]


class CamResult(NamedTuple):
    """Maps at the image size ``{name: [B, H, W]}``, on the activation grid ``{name: [B, h, w]}``, scores."""

    maps: dict
    grid_maps: dict
    scores: dict


class ActivationCapture(contextlib.AbstractContextManager):
    """While active, the last forward of ``visual`` leaves its Grad-CAM activation in :attr:`activation`.

    :attr:`grid` is ``(h, w)``; :meth:`as_map` turns the captured tensor (or a gradient of it) into
    ``[B, C, h, w]``.
    """

    def __init__(self, visual):
        from open_clip.transformer import VisionTransformer

        self.visual = visual
        self.is_vit = isinstance(visual, VisionTransformer)
        self.activation = None
        self._handle = None
        if self.is_vit:
            self.grid = tuple(int(g) for g in visual.grid_size)
            self.batch_first = getattr(visual.transformer, "batch_first", True)
        elif hasattr(visual, "layer4"):
            self.grid = None  # known after the forward pass
        else:
            raise ConfigError(f"Grad-CAM supports open_clip ViT and ModifiedResNet image towers, "
                              f"not {type(visual).__name__}")

    def __enter__(self):
        if self.is_vit:
            self._handle = self.visual.transformer.resblocks[-1].register_forward_pre_hook(self._pre_hook)
        else:
            self._handle = self.visual.layer4.register_forward_hook(self._post_hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()
        return False

    def _leaf(self, x):
        self.activation = x.detach().requires_grad_(True)
        return self.activation

    def _pre_hook(self, module, args):
        return (self._leaf(args[0]),) + tuple(args[1:])

    def _post_hook(self, module, args, output):
        out = self._leaf(output)
        self.grid = tuple(out.shape[-2:])
        return out

    def as_map(self, tensor):
        """Captured activation (or its gradient) -> ``[B, C, h, w]`` on the spatial / patch grid."""
        if not self.is_vit:
            return tensor
        x = tensor if self.batch_first else tensor.transpose(0, 1)
        h, w = self.grid
        patches = x[:, 1:1 + h * w]  # drop the class token and vision prompts appended after the patches
        return patches.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


def grad_cam(activation, gradient):
    """Grad-CAM ``[B, h, w]`` from an activation and the score's gradient, both ``[B, C, h, w]``."""
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activation).sum(dim=1))


def token_cam(activation, gradient):
    """Each position weighted by its own gradient: ``ReLU(sum_c G * A)`` ``[B, h, w]``."""
    return torch.relu((gradient * activation).sum(dim=1))


VARIANTS = {"token": token_cam, "gradcam": grad_cam}


def cams_for_scores(visual, image_features, images, score_fns, variant=None):
    """Grad-CAM maps at the image's size for several scores of one forward pass.

    ``image_features``: callable ``images -> [B, E]`` that runs ``visual``; ``score_fns``: ``{name: callable
    features [B, E] -> scores [B]}`` (each image's own score; images do not interact). Returns
    a :class:`CamResult` (maps are float and >= 0). ``variant``: a key of :data:`VARIANTS`; None = ``"token"``
    for a ViT, ``"gradcam"`` for a ResNet.
    """
    cap = ActivationCapture(visual)
    variant = variant or ("token" if cap.is_vit else "gradcam")
    if variant not in VARIANTS:
        raise ConfigError(f"Grad-CAM variant {variant!r} is not one of {', '.join(VARIANTS)}")
    make_map = VARIANTS[variant]
    with cap, torch.enable_grad():
        feats = image_features(images)
        if cap.activation is None:
            raise ConfigError("the image tower ran without reaching its last block; cannot take Grad-CAM")
        acts = cap.as_map(cap.activation).float()
        maps, grid_maps, scores = {}, {}, {}
        names = list(score_fns)
        for i, name in enumerate(names):
            score = score_fns[name](feats)
            (grad,) = torch.autograd.grad(score.sum(), cap.activation, retain_graph=i < len(names) - 1)
            cam = make_map(acts.detach(), cap.as_map(grad).float())
            grid_maps[name] = cam.detach()
            maps[name] = F.interpolate(cam[:, None], size=images.shape[-2:], mode="bilinear",
                                       align_corners=False)[:, 0].clamp_min(0)
            scores[name] = score.detach().float()
    return CamResult(maps, grid_maps, scores)
