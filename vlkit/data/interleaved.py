"""Interleaved image-text documents (OBELICS / MINT-1T style; docs/architecture.md, "Data"): parsing and
tokenization.

A document is ``KEY.json`` with aligned ``texts`` and ``images`` lists (at each position exactly one is
not null) plus ``KEY.0.png``, ``KEY.1.png``, ... for its images in order (the i-th non-null ``images``
entry is ``KEY.i.<ext>``; the entries' values themselves are not read). An optional ``targets`` list,
aligned too, marks the text segments that carry loss; each target is followed by an end-of-sequence token,
as each answer of a conversation is. Without ``targets`` every text segment carries loss (document
pretraining, as on OBELICS) and one end-of-sequence token closes the document. An optional ``task`` names
the task for per-task evaluation.

Every image becomes one ``<image>`` marker (labels -100), which the fusion expands into its visual tokens.
"""

from __future__ import annotations

from ..constants import IGNORE_INDEX, IMAGE_TOKEN


def document_segments(record: dict, key: str) -> tuple[list[str | None], list[bool] | None]:
    """The document's segments in order (text, or None where an image sits) and its ``targets``.

    Raises:
        ValueError: the lists are not aligned, a position holds both or neither modality, or a target
            is not a text segment.
    """
    texts, images, targets = record['texts'], record['images'], record.get('targets')
    if not isinstance(texts, list) or not isinstance(images, list) or len(texts) != len(images):
        raise ValueError(f'document {key!r}: "texts" and "images" must be lists of equal length')
    segments = []
    for i, (text, image) in enumerate(zip(texts, images, strict=True)):
        if (text is None) == (image is None):
            raise ValueError(
                f'document {key!r}: position {i} must hold a text or an image (the other null), '
                f'got text={text!r}, image={image!r}'
            )
        segments.append(text)
    if targets is not None:
        if not isinstance(targets, list) or len(targets) != len(texts):
            raise ValueError(f'document {key!r}: "targets" must be a list aligned with "texts"')
        bad = [i for i, (t, s) in enumerate(zip(targets, segments, strict=True)) if t and s is None]
        if bad:
            raise ValueError(f'document {key!r}: targets at image positions {bad}; targets must be texts')
        targets = [bool(t) for t in targets]
    return segments, targets


def tokenize_document(
    tokenizer, segments: list[str | None], targets: list[bool] | None = None, for_generation: bool = False
) -> dict:
    """Token ids and labels of a document; image positions become ``<image>`` markers.

    Returns ``input_ids``, ``labels`` and ``num_images``. With ``for_generation`` the ids stop before the
    last target (the last text segment without ``targets``), which is returned stripped as ``answer``;
    ``num_images`` then counts the images before it, the ones the prompt holds.
    """
    train_all = targets is None
    is_target = [s is not None and (train_all or targets[i]) for i, s in enumerate(segments)]
    if not any(is_target):
        raise ValueError('the document has no target text segment to train on or to answer')
    last = max(i for i, t in enumerate(is_target) if t)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    labels = [IGNORE_INDEX] * len(ids)
    for i, segment in enumerate(segments):
        if segment is None:
            ids.append(image_id)
            labels.append(IGNORE_INDEX)
            continue
        if for_generation and i == last:
            return {'input_ids': ids, 'answer': segment.strip(), 'num_images': ids.count(image_id)}
        piece = tokenizer(segment, add_special_tokens=False)['input_ids']
        if is_target[i] and not train_all:
            piece = piece + [tokenizer.eos_token_id]
        ids += piece
        labels += piece if is_target[i] else [IGNORE_INDEX] * len(piece)
    if train_all:
        ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    return {'input_ids': ids, 'labels': labels, 'num_images': ids.count(image_id)}
