"""Packages: vlkit, and the top-level connectors/ folder installed as vlkit.connectors (the built-in
connectors are plug-ins like any user's, kept in a folder of their own; no generic top-level `connectors`
package is installed). Metadata and dependencies are in setup.cfg."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=['vlkit', 'vlkit.*']), 'vlkit.connectors'],
    package_dir={'vlkit.connectors': 'connectors'},
)
