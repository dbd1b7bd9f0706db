# fhir-bridge as a container: non-root, runs on a read-only root filesystem, keeps its state in /data.
#
#   docker build -t fhir-bridge .
#   docker run --read-only --tmpfs /tmp -v fhir-bridge-data:/data -p 8080:8080 \
#     -e FHIR_BRIDGE_CATALOGUE_TITLE="..." fhir-bridge
#
# deploy/compose.yaml runs it with PostgreSQL; docs/operations.md#deployment explains the choices.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The source tree stays in /opt/fhir-bridge: the shipped clinical mappings (mappings/) are read from beside
# the package. Compiled once here, so nothing is written below / at run time.
WORKDIR /opt/fhir-bridge
COPY pyproject.toml README.md ./
COPY fhir_bridge ./fhir_bridge
COPY mappings ./mappings
COPY deploy/entrypoint.sh /usr/local/bin/fhir-bridge-entrypoint
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install -q -e /opt/fhir-bridge \
    && /opt/venv/bin/python -m compileall -q /opt/fhir-bridge/fhir_bridge \
    && chmod 0755 /usr/local/bin/fhir-bridge-entrypoint \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home fhir-bridge \
    && mkdir -p /data && chown fhir-bridge:fhir-bridge /data

ENV PATH=/opt/venv/bin:$PATH \
    HOME=/data \
    DATA_DIR=/data \
    FHIR_BRIDGE_HOST=0.0.0.0 \
    FHIR_BRIDGE_DATABASE_URL=sqlite:////data/fhir-bridge.db \
    FHIR_BRIDGE_DIMSE_SPOOL_DIR=/data/dimse-spool

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 11112
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4)"]
ENTRYPOINT ["fhir-bridge-entrypoint"]
CMD ["serve"]
