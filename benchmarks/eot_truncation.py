"""Benchmark: text encoding with and without EOT truncation (docs/DESIGN.md section 7).

The CLIP text transformer is causal and its feature is read at the EOT token, so positions after the last
EOT cannot change any feature; ``TextEncoder`` runs only ``max(EOT)+1`` of the 77 positions. This script
times both paths on CoOp-style prompts ``"a photo of a {name}."`` for 50 and 1000 classes with a
ViT-B/32-sized text tower (width 512, 12 layers, 8 heads, random weights) and prints the ratio, plus the
largest feature difference between the two paths (should be ~1e-6 in fp32).

    python -m benchmarks.eot_truncation                      # CPU, fp32 (about 2 minutes on 2 cores)
    python -m benchmarks.eot_truncation --device cuda --repeats 20
    python -m benchmarks.eot_truncation --classnames DATA/imagenet/classnames.txt   # real names
"""

import argparse
import statistics
import time

import torch

from clip_tools.encoders import TextEncoder
from clip_tools.loading import build_tiny_clip
from clip_tools.tokens import tokenize

# Class names of the kind found in the 11 CoOp datasets (pets, flowers, food, aircraft, cars, scenes...).
BASE_NAMES = [
    "Abyssinian", "american bulldog", "Bengal", "Birman", "boxer", "British Shorthair", "chihuahua",
    "english cocker spaniel", "german shorthaired", "great pyrenees", "havanese", "keeshond", "leonberger",
    "Maine Coon", "miniature pinscher", "newfoundland", "Persian", "pomeranian", "Ragdoll", "Russian Blue",
    "saint bernard", "samoyed", "scottish terrier", "shiba inu", "Siamese", "Sphynx", "yorkshire terrier",
    "pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea", "english marigold",
    "tiger lily", "moon orchid", "bird of paradise", "monkshood", "globe thistle", "snapdragon",
    "apple pie", "baby back ribs", "beef carpaccio", "beignets", "bibimbap", "breakfast burrito",
    "caesar salad", "chicken quesadilla", "chocolate mousse", "clam chowder", "creme brulee", "eggs benedict",
    "Boeing 737-800", "Airbus A320", "Cessna 172", "Dash 8", "DC-10", "Embraer Legacy 600", "Tu-154",
    "2012 Tesla Model S", "2012 BMW M3 coupe", "2007 Chevrolet Express Cargo Van", "1993 Geo Metro Convertible",
    "2012 Hyundai Veloster Hatchback", "2012 Rolls-Royce Phantom Drophead Coupe Convertible",
    "abbey", "airplane cabin", "amusement arcade", "bamboo forest", "bowling alley", "coffee shop",
    "indoor swimming pool", "outdoor tennis court", "sky", "banded", "braided", "cobwebbed", "crystalline",
    "Annual Crop Land", "Herbaceous Vegetation Land", "Permanent Crop Land", "Sea or Lake",
    "Apply Eye Makeup", "Band Marching", "Playing Daf", "Throw Discus", "Yo Yo",
    "tench", "goldfish", "great white shark", "Chesapeake Bay Retriever", "through arch bridge",
    "accordion", "airliner", "analog clock", "backpack", "ballpoint pen", "volcano", "daisy",
]
QUALIFIERS = ["", "small", "large", "wild", "young", "old", "striped", "spotted", "northern", "common"]


def class_names(n, source=None):
    """``n`` class names: from a file (``id name`` lines or plain names), else built from BASE_NAMES."""
    if source:
        with open(source, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
        names = [ln.split(" ", 1)[1] if ln.split(" ", 1)[0].startswith("n0") else ln for ln in lines]
        return (names * (n // len(names) + 1))[:n]
    names = []
    for q in QUALIFIERS:
        for base in BASE_NAMES:
            names.append(f"{q} {base}".strip())
    return (names * (n // len(names) + 1))[:n]


def time_call(fn, repeats, warmup, device):
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs, and its last output."""
    for _ in range(warmup):
        fn()
    times, out = [], None
    for _ in range(max(1, repeats)):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def run_case(encoder, model, n_cls, repeats, warmup, device, source):
    tokens = tokenize([f"a photo of a {name}." for name in class_names(n_cls, source)], 77).to(device)
    with torch.inference_mode():
        embeds = model.token_embedding(tokens)
        t_trunc, truncated = time_call(lambda: encoder(embeds, tokens), repeats, warmup, device)
        t_full, full = time_call(lambda: encoder(embeds, tokens, truncate=False), repeats, warmup, device)
    seq = int(tokens.argmax(-1).max()) + 1
    diff = (truncated - full).abs().max().item()
    print(f"{n_cls:5d} prompts  tokens {tuple(tokens.shape)} -> run {seq}/77 positions  "
          f"full {t_full * 1000:9.1f} ms  truncated {t_trunc * 1000:8.1f} ms  "
          f"speed-up x{t_full / t_trunc:5.2f}  max|diff| {diff:.1e}  (median of {repeats})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--classes", type=int, nargs="+", default=[50, 1000], help="numbers of class prompts")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (below 500 classes)")
    parser.add_argument("--repeats-large", type=int, default=1, help="timed repeats from 500 classes up")
    parser.add_argument("--classnames", default=None, help="optional class-name file (ImageNet classnames.txt)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model, _ = build_tiny_clip(embed_dim=512, text_width=512, text_layers=12, heads=8, context_length=77,
                               vision_layers=1)
    model = model.to(device)
    encoder = TextEncoder(model)
    print(f"text tower: width 512, 12 layers, 8 heads, context 77, fp32 on {device} "
          f"({torch.get_num_threads()} CPU threads), random weights")
    for i, n_cls in enumerate(args.classes):
        # 1000 classes untruncated is 77k token positions through 12 layers: on CPU one timed run, warmed
        # up by the smaller case before it, keeps the default near 2 minutes on 2 cores
        large = n_cls >= 500
        warmup = 0 if (large and device.type == "cpu" and i > 0) else 1
        run_case(encoder, model, n_cls, args.repeats_large if large else args.repeats, warmup, device,
                 args.classnames)


if __name__ == "__main__":
    main()
