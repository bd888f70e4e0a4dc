# korean-llm runtime: every pipeline stage is `python -m korean_llm <stage> --config /etc/korean-llm/<stage>.yaml`.
# Build and push: ci/build-image.sh [--push]. Tested without a Docker engine by tests/test_dockerfile.py (hadolint
# and a parser). CUDA 13.0 and torch 2.11 + cu130 match the GPU hosts (driver >= 580); Python 3.12 is Ubuntu 24.04's.
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

ARG TORCH_VERSION=2.11.0
ARG TORCHVISION_VERSION=0.26.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="korean-llm runtime" \
      org.opencontainers.image.description="Korean LLM pipeline stages (preprocess, cpt, sft, rlhf, evaluate, deploy) on Unsloth" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04"

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/cache/huggingface \
    KOREAN_LLM_CACHE=/cache/korean-llm \
    TRITON_CACHE_DIR=/cache/triton

# Triton (Unsloth's kernels) compiles a small C launcher at run time: it needs gcc and the Python headers.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv python3.12-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python3.12 -m venv /opt/venv

WORKDIR /opt/korean-llm
# The same constraints file as `make setup` and the tests; torch comes from PyTorch's CUDA 13.0 index first,
# and the second install keeps it (its `==` pins match the local +cu130 build).
COPY pyproject.toml constraints.txt ./
COPY runtime ./runtime
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
    && pip install -c constraints.txt ".[gpu,tracking]" "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin korean-llm \
    && mkdir -p /data /output /cache \
    && chown korean-llm:korean-llm /data /output /cache
USER 10001:10001
WORKDIR /home/korean-llm
VOLUME ["/data", "/output", "/cache"]

ENTRYPOINT ["python", "-m", "korean_llm"]
CMD ["--help"]
