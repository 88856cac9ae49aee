# The operator's image: a wheel built in one stage, installed into a clean virtualenv in the next, so no build tool
# reaches the final layer.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
# Any user id works (OpenShift assigns arbitrary ones): nothing needs a passwd entry, a home or a writable root file
# system. 65532 is only the default.
USER 65532:65532
EXPOSE 8080
# The image is the `commerce-jobs` command: `docker run IMAGE` runs the operator (the CMD below), and any other
# subcommand replaces the CMD, e.g. `docker run IMAGE start import-solr --wait`. The chart's `args` replace the CMD
# too, with a whole `run ...` command line of their own (Kubernetes' args never replace the ENTRYPOINT).
ENTRYPOINT ["commerce-jobs"]
CMD ["run", "--standalone", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]
