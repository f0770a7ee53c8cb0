# One image for every kdflow pipeline component, the training job and the model server.
#   make image / make push REGISTRY=...                           (wheels from the index; docs/kubeflow.md)
#   docker/wheelhouse.sh && docker build --build-arg PIP_NO_INDEX=1 .   (offline, wheels from docker/wheelhouse)
# BASE_IMAGE must provide python3.11 with the venv module; both stages use it, so the venv's
# interpreter link stays valid in the final stage. Pinned by digest (a tag moves); refresh with
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${BASE_IMAGE} AS build
# pip reads these build args from the environment: PIP_NO_INDEX=1 for offline builds, or another index
ARG PIP_NO_INDEX=0
ARG PIP_INDEX_URL=https://pypi.org/simple
# torch CPU wheels live on the PyTorch index; the default index alone would pull the CUDA build
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_FIND_LINKS=/tmp/docker/wheelhouse
COPY docker/ /tmp/docker/
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --prefer-binary --require-hashes -r /tmp/docker/requirements.txt
WORKDIR /tmp/kdflow
COPY pyproject.toml README.md ./
COPY src/ src/
# --no-deps: every dependency is pinned above; the wheel adds only kdflow itself
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation .

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="kdflow" \
      org.opencontainers.image.description="Knowledge distillation stages for Kubeflow, DVC and serving" \
      org.opencontainers.image.licenses="Apache-2.0"
# a fixed non-root uid: kfp-kubernetes pods run with runAsUser 10001 (kubeflow.run_as_user)
RUN groupadd --system --gid 10001 kdflow \
    && useradd --system --uid 10001 --gid kdflow --create-home --home-dir /home/kdflow kdflow
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true \
    DVC_NO_ANALYTICS=1 \
    HOME=/home/kdflow
USER 10001:10001
WORKDIR /home/kdflow
EXPOSE 8000
CMD ["kdflow", "--help"]
