#!/usr/bin/env bash
# Shared options of the MaPLe_KDPL scripts (sourced): protocols.sh's environment and scripts/lib/kdpl.sh's.
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lib/kdpl.sh"
