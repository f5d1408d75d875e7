# The acr-vpc-build image for Docker and Kubernetes work pools (docs/scaling.md, "Container image").
#
#   docker build -t acr-vpc-build:0.1.0 .
#
# Stage 1 builds the project's wheel; the final image is Prefect's official image with that wheel
# (and the s3 extra, for shared result storage) installed at the versions of constraints.txt, run
# as a non-root user. No checkout, spec file or credential is in the final image: the deployments
# carry the spec as their `spec` parameter (acrvpc deploy, deploy/prefect-*.yaml) and the flows
# load credentials from the Prefect blocks the spec names.
# The base image's Prefect version is the one constraints.txt pins (tests/unit/test_container.py).

FROM prefecthq/prefect:3.9.1-python3.11 AS wheel
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest of the checkout out of the context).
COPY pyproject.toml README.md ./
COPY acrvpc ./acrvpc
COPY flows ./flows
COPY tasks ./tasks
COPY deployments ./deployments
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM prefecthq/prefect:3.9.1-python3.11
COPY constraints.txt /tmp/acrvpc/constraints.txt
COPY --from=wheel /dist/ /tmp/acrvpc/dist/
# The wheel by its file (never a same-named package from an index), its dependencies pinned.
RUN set -eu; \
    wheel="$(ls /tmp/acrvpc/dist/acr_vpc_build-*.whl)"; \
    python -m pip install --no-cache-dir -c /tmp/acrvpc/constraints.txt "${wheel}[s3]"; \
    rm -rf /tmp/acrvpc; \
    useradd --uid 10001 --user-group --create-home --home-dir /home/acrvpc --shell /usr/sbin/nologin acrvpc
# A numeric user, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
ENV PREFECT_HOME=/home/acrvpc/.prefect \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /home/acrvpc
# The base image's entrypoint runs the command given: a worker's `prefect flow-run execute`, or e.g.
# `prefect worker start --pool acr-vpc-build` / `acrvpc webhook serve --deployment build-on-push/NAME`.
