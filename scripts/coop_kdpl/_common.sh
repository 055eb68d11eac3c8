#!/usr/bin/env bash
# Shared options of the CoOp_KDPL scripts (sourced): protocols.sh's environment, scripts/lib/kdpl.sh's
# (TEACHER, CLASS_AGNOSTIC, CLASSNAMES_FILE, K_MAX), and N_CTX (4).
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lib/kdpl.sh"
KDPL_OPTS=(TRAINER.COOP.N_CTX "${N_CTX:-4}" TRAINER.COOP.CSC False TRAINER.COOP.CLASS_TOKEN_POSITION end
           ${KDPL_OPTS[@]+"${KDPL_OPTS[@]}"})
