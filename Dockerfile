# cellseg: Airflow 3 + the pipeline package, from the same pinned lock file CI uses.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    AIRFLOW_HOME=/opt/airflow \
    CELLSEG_HOME=/opt/cellseg/work \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/cellseg/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/cellseg
COPY requirements.lock ./
# Exactly the pinned set (torch 2.14.1 + torchvision 0.29.1, CUDA wheels: they run on CPU too).
RUN pip install "uv==0.13.9" && uv pip sync --system requirements.lock

COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY dags ./dags
COPY configs ./configs
RUN uv pip install --system --no-deps . \
    && useradd --create-home --uid 50000 airflow \
    && mkdir -p "$AIRFLOW_HOME" "$CELLSEG_HOME" && chown -R airflow "$AIRFLOW_HOME" "$CELLSEG_HOME"

USER airflow
EXPOSE 8080
ENTRYPOINT ["airflow"]
CMD ["api-server"]
