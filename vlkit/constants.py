"""Constants every layer shares (the lowest layer, with :mod:`vlkit.registry`; docs/architecture.md)."""

IGNORE_INDEX = -100  # the label of a position that carries no loss (prompts, padding, visual tokens)
IMAGE_TOKEN = '<image>'  # the text marker of an image, one per image, where its visual tokens belong
