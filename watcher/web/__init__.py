"""The status server and its page: the HTTP API, the HTML page and its rows, trends and SVG, token-guarded
actions and Prometheus metrics."""
