"""Datasets and input pipelines. Imports nothing else from the project."""
