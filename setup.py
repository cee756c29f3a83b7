"""Build glue that pyproject.toml cannot express: ship the top-level configs/ as the package ``nvresearch.configs``."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["nvresearch", "nvresearch.*"]), "nvresearch.configs"],
    package_dir={"nvresearch.configs": "configs"},
    package_data={"nvresearch.configs": ["*.yaml", "**/*.yaml"]},
)
