"""Transformations: plain functions from Spark DataFrames to Spark DataFrames (built-in functions only)."""
