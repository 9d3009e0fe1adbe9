"""The `benchwatch` command line: one module per command family; `main` builds the parser and imports lazily."""
