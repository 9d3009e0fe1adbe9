"""Reading config files: YAML with line numbers, environment and _file references, strict models, durations."""
