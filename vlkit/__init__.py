"""vlkit: build, train and compare vision-language models that differ in their connector and fusion."""

__version__ = '0.1.0'
