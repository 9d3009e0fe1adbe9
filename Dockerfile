FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY watcher ./watcher
COPY rules ./rules
COPY notifiers ./notifiers
RUN pip install --no-cache-dir -c constraints.txt . \
    && mkdir -p /var/lib/benchwatch && chown nobody /var/lib/benchwatch
USER nobody
EXPOSE 8787 9108
STOPSIGNAL SIGTERM
CMD ["benchwatch", "--help"]
