"""The CLIP backend every method shares: names -> weight files -> open_clip ``CLIP`` modules.

What it accepts as ``MODEL.BACKBONE.NAME``:

* OpenAI names (``RN50`` ... ``ViT-L/14@336px``) -> the open_clip architecture with the ``openai`` tag;
* open_clip ``ARCH:TAG`` pairs (``ViT-H-14-quickgelu:dfn5b``), bare open_clip architectures (their
  default tag), and ``ARCH:/path/to/weights`` (architecture from open_clip's config, weights from the file);
* a path to a weight file: an OpenAI TorchScript archive, a plain state dict with OpenAI key names
  (architecture inferred from tensor shapes, OpenAI's rules), or our self-describing ``fdbpl-clip`` file.

Nothing here downloads. Tagged weights are looked up in ``cache_dir``, ``$FDBPL_CLIP_DIR``,
``~/.cache/clip`` and the Hugging Face cache; a miss is a :class:`CheckpointError` saying which file to
put where. Models come back in fp32, ``eval()``, on the CPU, with every parameter frozen.
"""

import contextlib
import copy
import math
import os
import warnings
import zipfile
from typing import NamedTuple

import torch

from engine.errors import CheckpointError, ConfigError

__all__ = [
    "OPENAI_MODELS",
    "ModelRef",
    "build_clip",
    "build_tiny_clip",
    "check_image_size",
    "image_size_of",
    "infer_openai_arch",
    "load_clip",
    "pretrained_mean_std",
    "read_clip_file",
    "resolve_model_name",
    "save_clip_file",
]

# OpenAI's published names -> open_clip architecture names (all use the "openai" tag).
OPENAI_MODELS = {
    "RN50": "RN50", "RN101": "RN101", "RN50x4": "RN50x4", "RN50x16": "RN50x16", "RN50x64": "RN50x64",
    "ViT-B/32": "ViT-B-32", "ViT-B/16": "ViT-B-16", "ViT-L/14": "ViT-L-14", "ViT-L/14@336px": "ViT-L-14-336",
}
# Default tags for bare architectures that have no "openai" weights (KDPL's teacher is DFN5B ViT-H/14).
DEFAULT_TAGS = {"ViT-H-14-quickgelu": "dfn5b", "ViT-H-14-378-quickgelu": "dfn5b", "ViT-H-14": "dfn5b"}
FILE_FORMAT = "fdbpl-clip"
FILE_VERSION = 1
DEFAULT_CLIP_CACHE = os.path.join("~", ".cache", "clip")  # where OpenAI's and open_clip's URL downloads go
# Keys found in OpenAI TorchScript archives (or traced modules) that are not CLIP parameters.
_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


# ------------------------------------------------------------------------------------------- names


class ModelRef(NamedTuple):
    """A resolved backbone: open_clip ``arch`` (None = infer from the file) and a tag or a file path."""

    arch: str | None
    pretrained: str

    @property
    def is_file(self):
        return os.path.isabs(self.pretrained)  # files are resolved to absolute paths; tags never are


def _open_clip():
    import open_clip  # imported lazily: it pulls in torchvision, which is slow to import

    return open_clip


def _known_arch(name):
    # list_models, not get_model_config: the latter treats "hf-hub:..." as a Hub address (network)
    return name in _open_clip().list_models()


def _default_tag(arch):
    tags = _open_clip().list_pretrained_tags_by_model(arch)
    if "openai" in tags:
        return "openai"
    if arch in DEFAULT_TAGS and DEFAULT_TAGS[arch] in tags:
        return DEFAULT_TAGS[arch]
    if len(tags) == 1:
        return tags[0]
    if not tags:
        raise ConfigError(f"open_clip architecture '{arch}' has no pretrained tags; pass 'ARCH:/path/to/weights'")
    raise ConfigError(f"MODEL.BACKBONE.NAME '{arch}' is ambiguous; name the weights as '{arch}:TAG' "
                      f"with TAG one of {', '.join(tags)}")


def resolve_model_name(name):
    """Map a ``MODEL.BACKBONE.NAME`` value to a :class:`ModelRef` (a 2-tuple ``(arch, tag_or_path)``)."""
    name = str(name).strip()
    if not name:
        raise ConfigError("MODEL.BACKBONE.NAME is empty; set it to e.g. ViT-B/32 or a path to a weight file")
    if name in OPENAI_MODELS:
        return ModelRef(OPENAI_MODELS[name], "openai")
    expanded = os.path.expanduser(name)
    if os.path.isfile(expanded):
        return ModelRef(None, os.path.abspath(expanded))
    arch, sep, tail = name.partition(":")
    if _known_arch(arch):
        if not sep:
            return ModelRef(arch, _default_tag(arch))
        tail_path = os.path.expanduser(tail)
        if os.path.isfile(tail_path):
            return ModelRef(arch, os.path.abspath(tail_path))
        tag = tail.lower().replace("-", "_")
        if _open_clip().get_pretrained_cfg(arch, tag):
            return ModelRef(arch, tag)
        tags = _open_clip().list_pretrained_tags_by_model(arch) or ["(none)"]
        raise ConfigError(f"'{tail}' in MODEL.BACKBONE.NAME '{name}' is neither a file nor a pretrained tag "
                          f"of {arch}; tags: {', '.join(tags)}")
    if name.startswith(("/", "./", "../", "~")) or name.endswith((".pt", ".pth", ".bin", ".safetensors")):
        raise CheckpointError(f"weight file '{name}' (MODEL.BACKBONE.NAME) does not exist; check the path")
    raise ConfigError(f"unknown MODEL.BACKBONE.NAME '{name}'; use an OpenAI name ({', '.join(OPENAI_MODELS)}), "
                      f"an open_clip 'ARCH:TAG' pair, or a path to a weight file")


# ------------------------------------------------------------------------------ finding tagged weights


def _search_dirs(cache_dir):
    dirs = [cache_dir, os.environ.get("FDBPL_CLIP_DIR"), DEFAULT_CLIP_CACHE]
    out = []
    for d in dirs:
        if d and os.path.expanduser(d) not in out:
            out.append(os.path.expanduser(d))
    return out


def _hf_cached(repo_id, filename, cache_dir):
    """Path of ``filename`` of ``repo_id`` in a Hugging Face cache, or None (never touches the network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for cdir in (cache_dir, None) if cache_dir else (None,):
        found = try_to_load_from_cache(repo_id, filename, cache_dir=cdir)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _tag_candidates(pcfg, cache_dir):
    """(local paths to try, human hint of what to download and where) for a pretrained-tag config."""
    dirs = _search_dirs(cache_dir)
    paths, hint = [], None
    url, hub = pcfg.get("url", ""), pcfg.get("hf_hub", "")
    if url:
        fname = os.path.basename(url)
        paths += [os.path.join(d, fname) for d in dirs]
        hint = f"download {fname} from {url} and place it at {paths[0]}"
    if hub:
        # open_clip's convention: "org/repo/" = default file names, "org/repo/file.bin" = that file
        repo_id, fname = (hub[:-1], "") if hub.endswith("/") else os.path.split(hub)
        fnames = [fname] if fname else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        repo_dir = repo_id.split("/")[-1]
        for d in dirs:
            paths += [os.path.join(d, repo_dir, f) for f in fnames]
        paths += [("hf", repo_id, f) for f in fnames]
        if hint is None:
            hint = (f"download {fnames[-1]} from https://huggingface.co/{repo_id} and place it at "
                    f"{os.path.join(dirs[0], repo_dir, fnames[-1])}")
    return paths, hint


def _find_tagged_weights(display, arch, tag, cache_dir):
    pcfg = _open_clip().get_pretrained_cfg(arch, tag)
    paths, hint = _tag_candidates(pcfg, cache_dir)
    for p in paths:
        found = _hf_cached(p[1], p[2], cache_dir) if isinstance(p, tuple) else (p if os.path.isfile(p) else None)
        if found:
            return found
    raise CheckpointError(f"weights for {display} ({tag}) not found; {hint or 'get the weight file'} "
                          f"(or set FDBPL_CLIP_DIR), or pass a local path as MODEL.BACKBONE.NAME")


# ------------------------------------------------------------------------------- reading weight files


def _is_torchscript(path):
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())


def _first_line(exc):
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:120]}"


def read_clip_file(path):
    """Read a weight file -> ``(state_dict, arch or None, meta)``; arch is known only for fdbpl-clip files."""
    if not os.path.isfile(path):
        raise CheckpointError(f"weight file '{path}' does not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu"), None, {}
        except Exception as exc:  # safetensors raises its own error types for a bad header or truncation
            raise CheckpointError(f"weight file '{path}' is named .safetensors but is not a readable safetensors "
                                  f"file ({_first_line(exc)}); re-download it or rename it to its real format") from None
    if _is_torchscript(path):
        try:
            with _warnings_silenced():
                return dict(torch.jit.load(path, map_location="cpu").state_dict()), None, {}
        except Exception as exc:  # a zip that only looks like a TorchScript archive, or a truncated one
            raise CheckpointError(f"weight file '{path}' looks like a TorchScript archive but cannot be read as one "
                                  f"({_first_line(exc)}); re-download it") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles with custom classes, truncated files, not a torch file at all
        raise CheckpointError(f"cannot read weight file '{path}' ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:120]}); re-save it as a plain state dict") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"weight file '{path}' holds a {type(obj).__name__}, not a state dict")
    if obj.get("format") == FILE_FORMAT:
        if obj.get("version") != FILE_VERSION or not isinstance(obj.get("arch"), dict):
            raise CheckpointError(f"'{path}' is an {FILE_FORMAT} file of unsupported version "
                                  f"{obj.get('version')!r}; this code reads version {FILE_VERSION}")
        sd = _densify_rows(obj["state_dict"], obj.get("row_sparse") or {}, path)
        return sd, obj["arch"], obj.get("meta") or {}
    sd = obj["state_dict"] if isinstance(obj.get("state_dict"), dict) else obj
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd, None, {}


def _densify_rows(sd, row_sparse, path):
    """Rebuild tensors an fdbpl-clip file stores row-sparse (``{key: {ids, rows, num_rows}}``; absent rows = 0).

    A toy model keeps only the token-embedding rows its captions use, which makes CLIP's 49408-row
    vocabulary a few kB instead of megabytes; plain tensors keep the file loadable with ``weights_only``.
    """
    sd = dict(sd)
    for key, entry in row_sparse.items():
        ids, rows = entry["ids"], entry["rows"]
        if key in sd or ids.ndim != 1 or rows.shape[0] != ids.shape[0]:
            raise CheckpointError(f"'{path}': malformed row-sparse entry {key!r}; re-save the file")
        dense = torch.zeros((int(entry["num_rows"]),) + tuple(rows.shape[1:]), dtype=rows.dtype)
        dense[ids] = rows
        sd[key] = dense
    return sd


@contextlib.contextmanager
def _warnings_silenced():
    """Silence torch.jit's deprecation chatter while reading OpenAI's TorchScript archives."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _count_blocks(sd, prefix):
    idx = {k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)}
    return len({i for i in idx if i.isdigit()})


def _grid(n_pos, key, source):
    side = math.isqrt(max(n_pos - 1, 0))
    if side * side + 1 != n_pos:
        raise CheckpointError(f"{source}: {key} has {n_pos} rows, not 1 + a square grid; not an OpenAI CLIP")
    return side


def infer_openai_arch(sd, source="state dict"):
    """Architecture (open_clip CLIP kwargs) of a state dict with OpenAI key names, from tensor shapes.

    OpenAI's rules: heads = width // 64 in both towers, QuickGELU activations.
    """
    for key in ("text_projection", "positional_embedding", "token_embedding.weight", "ln_final.weight"):
        if key not in sd:
            raise CheckpointError(f"{source}: missing key '{key}'; not a CLIP state dict with OpenAI key names "
                                  f"(for other open_clip models use MODEL.BACKBONE.NAME 'ARCH:{source}')")
    if "visual.proj" in sd:
        width, _, patch, _ = sd["visual.conv1.weight"].shape
        grid = _grid(sd["visual.positional_embedding"].shape[0], "visual.positional_embedding", source)
        vision = dict(layers=_count_blocks(sd, "visual.transformer.resblocks."), width=width,
                      patch_size=patch, image_size=grid * patch, head_width=64)
        if width % 64:
            raise CheckpointError(f"{source}: vision width {width} is not a multiple of 64 (OpenAI's head rule)")
    elif "visual.attnpool.positional_embedding" in sd:
        layers = tuple(_count_blocks(sd, f"visual.layer{b}.") for b in (1, 2, 3, 4))
        grid = _grid(sd["visual.attnpool.positional_embedding"].shape[0], "visual.attnpool.positional_embedding",
                     source)
        vision = dict(layers=layers, width=sd["visual.layer1.0.conv1.weight"].shape[0], patch_size=None,
                      image_size=grid * 32, head_width=64)
    else:
        raise CheckpointError(f"{source}: neither 'visual.proj' (ViT) nor 'visual.attnpool.*' (ResNet) found; "
                              f"not an OpenAI CLIP state dict")
    width = sd["ln_final.weight"].shape[0]
    if width % 64:
        raise CheckpointError(f"{source}: text width {width} is not a multiple of 64 (OpenAI's head rule)")
    text = dict(context_length=sd["positional_embedding"].shape[0], vocab_size=sd["token_embedding.weight"].shape[0],
                width=width, heads=width // 64, layers=_count_blocks(sd, "transformer.resblocks."))
    return dict(embed_dim=sd["text_projection"].shape[1], vision_cfg=vision, text_cfg=text, quick_gelu=True)


def _check_native(arch, source):
    v, t = arch.get("vision_cfg", {}), arch.get("text_cfg", {})
    bad = [k for k in ("custom_text", "multimodal_cfg") if arch.get(k)]
    bad += [k for k in ("timm_model_name",) if v.get(k)] + [k for k in ("hf_model_name",) if t.get(k)]
    if bad:
        raise ConfigError(f"{source}: open_clip models with {', '.join(bad)} are not supported; the prompted "
                          f"encoders need a plain open_clip CLIP (native ViT/ResNet + text transformer)")


def build_clip(arch, source="arch"):
    """Build a randomly initialised open_clip ``CLIP`` from an arch dict (open_clip CLIP kwargs)."""
    _check_native(arch, source)
    kwargs = {k: copy.deepcopy(v) for k, v in arch.items() if k in ("embed_dim", "vision_cfg", "text_cfg",
                                                                     "quick_gelu", "init_logit_scale",
                                                                     "init_logit_bias", "nonscalar_logit_scale")}
    try:
        return _open_clip().model.CLIP(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise CheckpointError(f"{source}: cannot build CLIP from arch {arch} ({exc})") from exc


def _load_weights(model, sd, source):
    sd = {k: v for k, v in sd.items() if k not in _EXTRA_KEYS}
    sd = {k: v.float() if torch.is_floating_point(v) else v for k, v in sd.items()}
    if "logit_scale" in sd and sd["logit_scale"].shape != model.logit_scale.shape:
        sd["logit_scale"] = sd["logit_scale"].reshape(model.logit_scale.shape)
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [k for k in own if k in sd and own[k].shape != sd[k].shape]
    if missing or unexpected or shapes:
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
                  else f"shape of {shapes[0]} is {tuple(sd[shapes[0]].shape)}, expected {tuple(own[shapes[0]].shape)}")
        raise CheckpointError(f"{source}: weights do not fit the architecture ({detail}); "
                              f"check MODEL.BACKBONE.NAME")
    model.load_state_dict(sd, strict=True)


def _finish(model, info):
    model = model.float().eval().cpu()
    for p in model.parameters():
        p.requires_grad_(False)
    model.fdbpl_info = info  # where the weights came from: recorded by RIL manifests and logs
    return model


def pretrained_mean_std(ref):
    """Normalisation constants of a resolved backbone: its open_clip tag's, else CLIP's (``engine.config``)."""
    from engine.config import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD

    mean, std = CLIP_PIXEL_MEAN, CLIP_PIXEL_STD
    if ref is not None and ref.arch and not ref.is_file:
        cfg = _open_clip().get_pretrained_cfg(ref.arch, ref.pretrained) or {}
        mean, std = cfg.get("mean") or mean, cfg.get("std") or std
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def load_clip(name_or_path, cache_dir=None):
    """Load a CLIP (fp32, eval, CPU, frozen) from a backbone name or a local weight file; never downloads."""
    ref = resolve_model_name(name_or_path)
    if ref.is_file:
        path = ref.pretrained
        display = path
    else:
        path = _find_tagged_weights(name_or_path, ref.arch, ref.pretrained, cache_dir)
        display = f"{name_or_path} ({path})"
    sd, arch, meta = read_clip_file(path)
    if arch is None and ref.arch is not None:
        arch = _open_clip().get_model_config(ref.arch)
        tag_cfg = {} if ref.is_file else _open_clip().get_pretrained_cfg(ref.arch, ref.pretrained)
        arch["quick_gelu"] = bool(arch.get("quick_gelu") or tag_cfg.get("quick_gelu"))
    if arch is None:
        arch = infer_openai_arch(sd, path)
    model = build_clip(arch, display)
    _load_weights(model, sd, display)
    return _finish(model, {"name": str(name_or_path), "path": path, "arch": arch, "meta": meta})


# ------------------------------------------------------------------------------- tiny models and files


def build_tiny_clip(seed=0, embed_dim=32, image_size=32, patch_size=8, vision_width=64, vision_layers=2,
                    text_width=64, text_layers=2, heads=2, context_length=16, quick_gelu=True,
                    vocab_size=49408):
    """A deterministic random CLIP for tests: ``(model, arch)``; a 4-tuple ``vision_layers`` gives a ResNet.

    ``heads`` is used by both towers (ViT head width = vision_width // heads; the ResNet's attention pool
    keeps OpenAI's width*32 // 64 heads). Keep ``vocab_size`` 49408 with the real tokenizer (EOT = max id).
    """
    if isinstance(vision_layers, (tuple, list)):
        vision = dict(layers=tuple(int(n) for n in vision_layers), width=vision_width, patch_size=None,
                      image_size=image_size, head_width=64)
    else:
        vision = dict(layers=int(vision_layers), width=vision_width, patch_size=patch_size,
                      image_size=image_size, head_width=vision_width // heads)
    text = dict(context_length=context_length, vocab_size=vocab_size, width=text_width, heads=heads,
                layers=text_layers)
    arch = dict(embed_dim=embed_dim, vision_cfg=vision, text_cfg=text, quick_gelu=bool(quick_gelu))
    with torch.random.fork_rng(devices=[]):  # deterministic without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = build_clip(arch, "build_tiny_clip")
    return _finish(model, {"name": "tiny", "path": None, "arch": arch, "meta": {"seed": seed}}), arch


def save_clip_file(model, arch, path, dtype=torch.float32, meta=None):
    """Write ``model`` as a self-describing fdbpl-clip file (floating tensors stored as ``dtype``)."""
    sd = {k: (v.detach().to("cpu", dtype) if torch.is_floating_point(v) else v.detach().cpu()).clone()
          for k, v in model.state_dict().items()}
    payload = {"format": FILE_FORMAT, "version": FILE_VERSION, "arch": copy.deepcopy(arch),
               "state_dict": sd, "meta": dict(meta or {})}
    tmp = f"{path}.tmp{os.getpid()}"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return path


# ----------------------------------------------------------------------------------------- image size


def image_size_of(model):
    """Input resolution ``(H, W)`` the CLIP's image tower was built for."""
    size = getattr(getattr(model, "visual", model), "image_size", None)
    if size is None:
        raise ConfigError("cannot tell the backbone's input resolution (no visual.image_size)")
    return (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)


def check_image_size(cfg_size, model):
    """ConfigError unless ``INPUT.SIZE`` equals the backbone's input resolution."""
    want = image_size_of(model)
    got = tuple(int(s) for s in cfg_size) if isinstance(cfg_size, (tuple, list)) else (int(cfg_size),) * 2
    if got != want:
        res = str(want[0]) if want[0] == want[1] else f"{want[0]}x{want[1]}"
        raise ConfigError(f"INPUT.SIZE {got} does not match the backbone's input resolution {res}; "
                          f"set INPUT.SIZE {want}")
