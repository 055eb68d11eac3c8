#!/usr/bin/env bash
# Shared options of the CoOp_KDPL scripts (sourced). Environment, besides protocols.sh's:
#   N_CTX (4), TEACHER (the config's TRAINER.KDPL.TEACHER: KDPL's ViT-H-14-quickgelu, the toy teacher in the toy world),
#   CLASS_AGNOSTIC=True with CLASSNAMES_FILE=/path/names.txt (one class name per line) and K_MAX (1000) for
#   KDPL-CA; its runs go to folders named CoOp_KDPL-CA, as KDPL's scripts do.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
KDPL_OPTS=(TRAINER.COOP.N_CTX "${N_CTX:-4}" TRAINER.COOP.CSC False TRAINER.COOP.CLASS_TOKEN_POSITION end)
if [[ -n "${TEACHER:-}" ]]; then KDPL_OPTS+=(TRAINER.KDPL.TEACHER "$TEACHER"); fi
if [[ "${CLASS_AGNOSTIC:-False}" == "True" ]]; then
    TRAINER_TAG=-CA
    # training only: evaluation uses the dataset's class names (the learned context is class-agnostic)
    CA_OPTS=(TRAINER.KDPL.CLASS_AGNOSTIC True TRAINER.KDPL.CLASSNAMES_FILE "${CLASSNAMES_FILE:-}"
             TRAINER.KDPL.K_MAX "${K_MAX:-1000}")
else
    CA_OPTS=()
fi

require_classnames_file() {  # training scripts only
    if [[ "${CLASS_AGNOSTIC:-False}" == "True" && -z "${CLASSNAMES_FILE:-}" ]]; then
        echo "error: CLASS_AGNOSTIC=True needs CLASSNAMES_FILE=/path/to/names.txt (one class name per line)" >&2
        exit 2
    fi
}
