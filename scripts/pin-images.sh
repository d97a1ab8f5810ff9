#!/usr/bin/env bash
# Pins the base images to the digests their tags point to now, in place:
#
#   image: postgres:17             ->  image: postgres:17@sha256:<digest>
#   ARG NODE_IMAGE=node:24-bookworm-slim -> ARG NODE_IMAGE=node:24-bookworm-slim@sha256:<digest>
#
# in docker-compose.yml, docker-compose.prod.yml and services/api/Dockerfile.
# The tag stays for people to read; Docker pulls by the digest, so a rebuild or a
# new host gets exactly the image that was tested. Re-run it to move to the
# tags' current images (e.g. a PostgreSQL or nginx patch release), then review
# and commit the diff:
#
#   scripts/pin-images.sh && git diff
#
# Needs a Docker engine that can reach the registry: `docker pull` of each tag,
# then the digest it was pulled by (`docker image inspect`, RepoDigests). That is
# the digest of the multi-platform index, so the pin holds on amd64 and arm64
# alike. To look a digest up without pulling:
#   docker buildx imagetools inspect postgres:17
# (the "Digest:" line).
#
# Usage: scripts/pin-images.sh [REPOSITORY_ROOT]     (default: this script's repository)
# DOCKER names the docker command (default: docker).
set -euo pipefail

root=${1:-"$(cd "$(dirname "$0")/.." && pwd)"}
docker=${DOCKER:-docker}
files=(docker-compose.yml docker-compose.prod.yml services/api/Dockerfile)

die() {
  echo "pin-images: $*" >&2
  exit 1
}

command -v "$docker" >/dev/null 2>&1 || die "no '$docker' command: this needs a Docker engine that can reach the registry"
for f in "${files[@]}"; do
  [ -f "$root/$f" ] || die "missing $root/$f"
done

# Image references: compose "image:" lines (not the project's own invsys-* images)
# and Dockerfile "ARG *_IMAGE=" defaults. Each as it is now, maybe already pinned.
refs=$(
  {
    sed -nE 's/^[[:space:]]*image:[[:space:]]*"?([^"[:space:]#]+)"?.*/\1/p' "$root/docker-compose.yml" "$root/docker-compose.prod.yml"
    sed -nE 's/^ARG[[:space:]]+[A-Z_]*IMAGE=([^[:space:]]+).*/\1/p' "$root/services/api/Dockerfile"
  } | grep -v '^invsys-' | sort -u
)
[ -n "$refs" ] || die "no image references found"

for ref in $refs; do
  tag=${ref%@sha256:*}
  repo=${tag%:*}
  "$docker" pull -q "$tag" >/dev/null || die "docker pull $tag failed"
  # RepoDigests lists "<repo>@sha256:…" per name the image was pulled under.
  digest=$("$docker" image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$tag" |
    sed -nE "s#^(docker\.io/)?(library/)?${repo}@(sha256:[0-9a-f]{64})\$#\3#p" | head -n 1)
  [[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || die "no digest for $tag in docker image inspect"
  pinned="$tag@$digest"
  if [ "$ref" = "$pinned" ]; then
    echo "pin-images: $tag unchanged ($digest)"
    continue
  fi
  for f in "${files[@]}"; do
    # The reference followed by the end of the line, a space, a quote or a comment.
    sed -i -E "s#([:=[:space:]\"])$(sed 's/[.[\*^$/#]/\\&/g' <<<"$ref")([\"[:space:]#]|\$)#\1${pinned}\2#g" "$root/$f"
  done
  echo "pin-images: $tag -> $digest"
done
