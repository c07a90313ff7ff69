# cellseg: the official Airflow image for the pinned Airflow version, plus the pipeline package
# and its locked dependencies (GPU-capable PyTorch: the CUDA wheels also run on a CPU).
FROM apache/airflow:3.3.2-python3.11

ENV CELLSEG_HOME=/opt/cellseg/work \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/cellseg/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

USER root
# g++: torch.compile's C++ and Triton launchers (train.compile, predict.compile)
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl g++ \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /opt/cellseg/work /opt/airflow/auth \
    && chown -R airflow: /opt/cellseg /opt/airflow/auth

USER airflow
WORKDIR /opt/cellseg
COPY --chown=airflow: requirements.lock ./
# The pinned versions (torch 2.14.1 + torchvision 0.29.1 CUDA wheels, Airflow 3.3.2, ...) into
# the image's own Python environment, as the airflow user; --no-deps: nothing is resolved, so
# no other torch can sneak in.
RUN pip install --no-cache-dir "uv==0.13.9" \
    && python -m uv pip install --python "$(command -v python)" --no-deps -r requirements.lock

COPY --chown=airflow: pyproject.toml README.md ./
COPY --chown=airflow: pipeline ./pipeline
COPY --chown=airflow: dags ./dags
COPY --chown=airflow: configs ./configs
ARG GIT_COMMIT=unknown
ENV CELLSEG_GIT_COMMIT=$GIT_COMMIT
RUN python -m uv pip install --python "$(command -v python)" --no-deps .

EXPOSE 8080
CMD ["api-server"]
