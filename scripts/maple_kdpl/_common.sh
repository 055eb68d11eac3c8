#!/usr/bin/env bash
# Shared options of the MaPLe_KDPL scripts (sourced). Environment, besides protocols.sh's:
#   TEACHER (KDPL's default ViT-H-14-quickgelu, DFN5B weights; any CLIP name or
#   weight file), CLASS_AGNOSTIC=True with CLASSNAMES_FILE=/path/names.txt (one name per line) and K_MAX (1000)
#   for KDPL-CA; its runs go to folders named MaPLe_KDPL-CA, as KDPL's scripts do.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
KDPL_OPTS=()
if [[ -n "${TEACHER:-}" ]]; then KDPL_OPTS+=(TRAINER.KDPL.TEACHER "$TEACHER"); fi
CA_OPTS=()
if [[ "${CLASS_AGNOSTIC:-False}" == "True" ]]; then
    TRAINER_TAG=-CA
    # training only: evaluation uses the dataset's class names
    CA_OPTS=(TRAINER.KDPL.CLASS_AGNOSTIC True TRAINER.KDPL.CLASSNAMES_FILE "${CLASSNAMES_FILE:-}"
             TRAINER.KDPL.K_MAX "${K_MAX:-1000}")
fi

require_classnames_file() {  # training scripts only
    if [[ "${CLASS_AGNOSTIC:-False}" == "True" && -z "${CLASSNAMES_FILE:-}" ]]; then
        echo "error: CLASS_AGNOSTIC=True needs CLASSNAMES_FILE=/path/to/names.txt (one class name per line)" >&2
        exit 2
    fi
}
