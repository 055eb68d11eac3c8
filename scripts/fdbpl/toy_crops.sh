#!/usr/bin/env bash
# TRAINER.FDBPL.CROPS_PER_IMAGE in the toy world: FDBPL (cached features) with 1, 2 and 4 stored crops of each
# image per step, seeds 0-2, 16 shots, 10 epochs, from ONE union table with student features:
#   bash scripts/fdbpl/toy_crops.sh TABLE     # TABLE: e.g. the one benchmarks/end_to_end.py builds (with features)
#   python scripts/parse_results.py --base2new output/crops/base2new
# A finished run is skipped; PY=/path/to/python picks the interpreter (default: python); SEEDS, CROPS override
# the lists. Prints each run's base / new accuracy and its process CPU time (user + system, train.py's whole run).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
OUT=output/crops/base2new
export TQDM_DISABLE=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread: CPU times without spinning threads, comparable
table=${1:?usage: bash scripts/fdbpl/toy_crops.sh TABLE (an RIL table of ToyShapes with student features)}
[ -f "$table/manifest.json" ] || { echo "error: $table is not an RIL table (no manifest.json)" >&2; exit 2; }
for seed in ${SEEDS:-0 1 2}; do
  for c in ${CROPS:-1 2 4}; do
    args=(--root data/toy --seed "$seed" --trainer FDBPL --dataset-config-file configs/datasets/toyshapes.yaml
          --config-file configs/trainers/FDBPL/toyshapes.yaml)
    opts=(MODEL.BACKBONE.NAME models/toy_student.pt DATASET.NUM_SHOTS 16 DATALOADER.NUM_WORKERS 0
          TRAINER.FDBPL.RIL_DIR "$table" TRAINER.FDBPL.CACHED_FEATURES True TRAINER.FDBPL.CROPS_PER_IMAGE "$c")
    train=$OUT/train_base/toyshapes/shots_16/FDBPL/crops$c/seed$seed
    test=$OUT/test_new/toyshapes/shots_16/FDBPL/crops$c/seed$seed
    mkdir -p "$train"
    if ! grep -q "^\* accuracy" "$train/log.txt" 2>/dev/null; then
      /usr/bin/env time -f "%U %S" -o "$train.cpu" "$PY" train.py "${args[@]}" --output-dir "$train" "${opts[@]}" \
        DATASET.SUBSAMPLE_CLASSES base > /dev/null
    fi
    grep -q "^\* accuracy" "$test/log.txt" 2>/dev/null ||
      "$PY" train.py "${args[@]}" --output-dir "$test" --eval-only --model-dir "$train" "${opts[@]}" \
        DATASET.SUBSAMPLE_CLASSES new > /dev/null
    echo "crops $c seed $seed: base $(grep -a '^\* accuracy' "$train/log.txt" | tail -1 | cut -d' ' -f3)" \
         "new $(grep -a '^\* accuracy' "$test/log.txt" | tail -1 | cut -d' ' -f3)" \
         "CPU s (user system) $(cat "$train.cpu" 2>/dev/null || echo 'not timed')"
  done
done
