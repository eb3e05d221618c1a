# The runner image. Multi-stage: the build stage installs the pinned packages into
# a virtual environment; the runtime stage copies only that, and runs as an
# unprivileged user given by number (Kubernetes' runAsNonRoot can only verify a
# numeric user). Tag images with the git SHA, never latest.
FROM python:3.12.12-slim-bookworm AS build
WORKDIR /app
RUN python -m venv /venv
COPY pyproject.toml constraints.txt README.md ./
COPY capstone ./capstone
RUN /venv/bin/pip install --no-cache-dir -c constraints.txt .

FROM python:3.12.12-slim-bookworm AS runtime
RUN useradd --system --uid 10001 --create-home agents
COPY --from=build /venv /venv
USER 10001
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 LOG_FORMAT=json RUNTIME_HOST=0.0.0.0
EXPOSE 8081
CMD ["python", "-m", "capstone.runtime"]
