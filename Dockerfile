FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY watcher ./watcher
COPY rules ./rules
COPY notifiers ./notifiers
RUN pip install --no-cache-dir -c constraints.txt .
USER nobody
ENTRYPOINT []
CMD ["benchwatch", "--help"]
