#!/bin/sh
# The container's entry point: `fhir-bridge "$@"` (default `serve`) after two first-start chores.
#
# 1. The site secret. Give it as a file (FHIR_BRIDGE_PSEUDONYM_KEY_FILE, e.g. a compose or Kubernetes
#    secret) or a variable. When neither is set and pseudonymisation is on, a key is made once in
#    $DATA_DIR/pseudonym.key and kept on later starts: back it up apart from the database, since
#    losing it changes every pseudonym.
# 2. With PROMETHEUS_MULTIPROC_DIR set (several worker processes), its folder is created and emptied,
#    as prometheus-client's multiprocess mode requires before the processes start.
set -eu

DATA_DIR="${DATA_DIR:-/data}"

if [ -z "${FHIR_BRIDGE_PSEUDONYM_KEY:-}" ] && [ -z "${FHIR_BRIDGE_PSEUDONYM_KEY_FILE:-}" ] \
    && [ "${FHIR_BRIDGE_PSEUDONYMISE:-true}" != "false" ] && [ -z "${FHIR_BRIDGE_CONFIG:-}" ]; then
    FHIR_BRIDGE_PSEUDONYM_KEY_FILE="$DATA_DIR/pseudonym.key"
    export FHIR_BRIDGE_PSEUDONYM_KEY_FILE
    if [ ! -e "$FHIR_BRIDGE_PSEUDONYM_KEY_FILE" ]; then
        echo "fhir-bridge-entrypoint: no site secret configured: making $FHIR_BRIDGE_PSEUDONYM_KEY_FILE (back it up)" >&2
        fhir-bridge keygen "$FHIR_BRIDGE_PSEUDONYM_KEY_FILE" >&2
    fi
fi

if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -type f -delete
fi

exec fhir-bridge "$@"
