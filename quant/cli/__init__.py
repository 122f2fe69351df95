"""Command-line interface: thin wrappers that parse, call quant.pipeline, and print."""
