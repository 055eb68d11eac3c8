#!/usr/bin/env bash
# Options every *_KDPL sweep script shares (sourced after protocols.sh). Environment:
#   TEACHER (default: the config's TRAINER.KDPL.TEACHER: KDPL's ViT-H-14-quickgelu with DFN5B weights, the toy
#   teacher in the toy world; any CLIP name or weight file), CLASS_AGNOSTIC=True with
#   CLASSNAMES_FILE=/path/names.txt (one class name per line) and K_MAX (1000) for KDPL-CA, whose runs go to
#   folders named <TRAINER>-CA, as KDPL's scripts do.
KDPL_OPTS=()
if [[ -n "${TEACHER:-}" ]]; then KDPL_OPTS+=(TRAINER.KDPL.TEACHER "$TEACHER"); fi
CA_OPTS=()
if [[ "${CLASS_AGNOSTIC:-False}" == "True" ]]; then
    TRAINER_TAG=-CA
    # training only: evaluation uses the dataset's class names (the learned prompts are class-agnostic)
    CA_OPTS=(TRAINER.KDPL.CLASS_AGNOSTIC True TRAINER.KDPL.CLASSNAMES_FILE "${CLASSNAMES_FILE:-}"
             TRAINER.KDPL.K_MAX "${K_MAX:-1000}")
fi

require_classnames_file() {  # training scripts only
    if [[ "${CLASS_AGNOSTIC:-False}" == "True" && -z "${CLASSNAMES_FILE:-}" ]]; then
        echo "error: CLASS_AGNOSTIC=True needs CLASSNAMES_FILE=/path/to/names.txt (one class name per line)" >&2
        exit 2
    fi
}
