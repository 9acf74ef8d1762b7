"""The synthetic benchmark: rendered coloured shapes and printed words, with questions that need the image.

Every image holds 1-4 shapes of distinct kinds and colours in a 4 x 2 grid of cells, and one printed word
in a band below them. Six tasks ask about them (:data:`TASKS`): ``colour`` ("what colour is the circle ?"),
``shape`` ("which shape is red ?"), ``count``, ``spatial`` ("which is further left , the circle or the
square ?"), ``position`` ("which shape is in the top row , third column ?") and ``text`` ("what word is
written ?"). For each sample the answer is drawn uniformly first and the scene is built to fit it, so the
question alone scores near chance (:data:`CHANCE`; the prior is measured and stored in the manifest).
``spatial`` and ``position`` are the tasks whose answer depends on where things are.

This is format 3 (:data:`FORMAT_VERSION`). Format 1 asked the spatial question as "is the A left of the
B ?" (yes / no) and had no ``position`` task. A probe on the frozen encoder's tokens
(benchmarks/task_probe.py) stayed at the majority answer on that form, while it read the same relation
asked as a choice between the two shapes; format 2 asks it that way. Format 3 keeps format 2's data and
takes where things are out of the encoder's image-level tags, so the mean token no longer reads the
locality tasks; see docs/data.md. The version covers the generator and the encoder-pretraining targets
together.

The generator also returns pixel-level label maps (:data:`LABEL_MAPS`): colour, shape, word, shape centres,
and two joint labels, ``object`` (colour and shape together) and ``place`` (shape and grid cell
together). The encoder pretraining stage (:mod:`vlkit.engine.encoder_pretraining`) derives its dense
per-patch targets from them.

Variants (:data:`VARIANTS`), generated lazily into ``{data_root}/variants/{name}`` only when a config asks
for them, reuse the same scenes and questions: ``interleaved`` writes few-shot interleaved documents (0-2
solved image-question pairs of one task, then a query; :mod:`vlkit.data.interleaved`), ``hires`` renders
the images at twice the size with the printed word small enough to be unreadable once the image is
downscaled to the base resolution (see :data:`HIRES_WORD_SCALE`), for patch-wise any-resolution encoding.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import tarfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLOURS = {
    'red': (220, 40, 40),
    'green': (40, 170, 60),
    'blue': (40, 80, 220),
    'yellow': (225, 200, 30),
    'purple': (150, 60, 190),
    'orange': (240, 140, 30),
}
SHAPES = ('circle', 'square', 'triangle', 'diamond')
WORDS = ('cat', 'dog', 'sun', 'box', 'cup', 'hat', 'pen', 'key')
NUMBERS = ('one', 'two', 'three', 'four')
ROWS = ('top', 'bottom')
COLUMNS = ('first', 'second', 'third', 'fourth')
TASKS = ('colour', 'shape', 'count', 'spatial', 'position', 'text')
LOCALITY_TASKS = ('spatial', 'position')  # the answer depends on where things are
# What a guess that knows only the question scores: the answers it allows are equally likely. A spatial
# question names its two candidate shapes, so its chance is one in two.
CHANCE = {'colour': 1 / len(COLOURS), 'shape': 1 / len(SHAPES), 'count': 1 / len(NUMBERS), 'spatial': 1 / 2,
          'position': 1 / len(SHAPES), 'text': 1 / len(WORDS)}  # fmt: skip
SPLIT_SEEDS = {'train': 1_000, 'val': 2_000_000, 'test': 3_000_000, 'pretrain': 4_000_000}

GRID_COLS, GRID_ROWS = 4, 2
BASE_SIZE = 64  # the layout is drawn on a 64 x 64 canvas and scaled to the requested size
CELL_W, CELL_H = 16, 20
WORD_BAND_TOP = 44
FORMAT_VERSION = 3
# label map name -> number of classes, background (0) included
LABEL_MAPS = {
    'colour': len(COLOURS) + 1,
    'shape': len(SHAPES) + 1,
    'word': len(WORDS) + 1,
    'centre': 2,
    'object': len(COLOURS) * len(SHAPES) + 1,
    'place': len(SHAPES) * GRID_COLS * GRID_ROWS + 1,
}


@dataclass
class Shape:
    kind: str
    colour: str
    col: int
    row: int


@dataclass
class Scene:
    shapes: list[Shape]
    word: str
    word_x: int
    jitter: list[tuple[int, int]] = field(default_factory=list)


def _random_scene(rng: random.Random, num_shapes: int, word: str | None = None) -> Scene:
    kinds = rng.sample(SHAPES, num_shapes)
    colours = rng.sample(list(COLOURS), num_shapes)
    cells = rng.sample([(c, r) for c in range(GRID_COLS) for r in range(GRID_ROWS)], num_shapes)
    shapes = [Shape(k, c, col, row) for k, c, (col, row) in zip(kinds, colours, cells, strict=True)]
    word = word or rng.choice(WORDS)
    jitter = [(rng.randint(-1, 1), rng.randint(-2, 2)) for _ in shapes]
    return Scene(shapes, word, rng.randint(2, 30), jitter)


def make_question(rng: random.Random, task: str) -> tuple[Scene, str, str]:
    """Draws the answer uniformly, then a scene that fits it; returns (scene, question, answer)."""
    if task == 'count':
        n = rng.randint(1, 4)
        return _random_scene(rng, n), 'how many shapes are there ?', NUMBERS[n - 1]
    if task == 'text':
        word = rng.choice(WORDS)
        return _random_scene(rng, rng.randint(1, 4), word), 'what word is written ?', word
    if task == 'colour':
        scene = _random_scene(rng, rng.randint(1, 4))
        target = rng.choice(scene.shapes)
        return scene, f'what colour is the {target.kind} ?', target.colour
    if task == 'shape':
        scene = _random_scene(rng, rng.randint(1, 4))
        target = rng.choice(scene.shapes)
        return scene, f'which shape is {target.colour} ?', target.kind
    if task == 'spatial':
        while True:
            scene = _random_scene(rng, rng.randint(2, 4))
            a, b = rng.sample(scene.shapes, 2)
            if a.col != b.col:
                break
        left = a if a.col < b.col else b
        return scene, f'which is further left , the {a.kind} or the {b.kind} ?', left.kind
    if task == 'position':
        kind = rng.choice(SHAPES)
        scene = _random_scene(rng, rng.randint(1, 4))
        target = rng.choice(scene.shapes)
        for shape in scene.shapes:  # give the target the drawn kind; the shape that had it takes the target's
            if shape.kind == kind:
                shape.kind = target.kind
        target.kind = kind
        return scene, f'which shape is in the {ROWS[target.row]} row , {COLUMNS[target.col]} column ?', kind
    raise ValueError(f'unknown synthetic task {task!r}; expected one of {TASKS}')


def _shape_polygon(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if kind == 'square':
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if kind == 'triangle':
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if kind == 'diamond':
        return [(cx, cy - r - 1), (cx + r + 1, cy), (cx, cy + r + 1), (cx - r - 1, cy)]
    return None  # circle: drawn as an ellipse


_FONT_CACHE: dict[int, ImageFont.FreeTypeFont] = {}


def _font(size: int) -> ImageFont.FreeTypeFont:
    if size not in _FONT_CACHE:
        _FONT_CACHE[size] = ImageFont.load_default(size=size)
    return _FONT_CACHE[size]


def render(
    scene: Scene, size: int = BASE_SIZE, word_scale: float = 1.0
) -> tuple[Image.Image, dict[str, np.ndarray]]:
    """Renders a scene; returns the RGB image and pixel label maps (0 = background) at ``size``.

    ``word_scale`` shrinks the printed word relative to the rest of the layout (the ``hires`` variant).
    """
    s = size / BASE_SIZE
    image = Image.new('RGB', (size, size), (245, 245, 240))
    maps = {name: Image.new('L', (size, size), 0) for name in LABEL_MAPS}
    draw = ImageDraw.Draw(image)
    label_draws = {name: ImageDraw.Draw(m) for name, m in maps.items()}
    for shape, (jx, jy) in zip(scene.shapes, scene.jitter, strict=True):
        cx = (shape.col * CELL_W + CELL_W / 2 + jx) * s
        cy = (shape.row * CELL_H + CELL_H / 2 + jy) * s
        r = 6 * s
        colour, kind = list(COLOURS).index(shape.colour), SHAPES.index(shape.kind)
        labels = {
            'colour': colour + 1,
            'shape': kind + 1,
            'object': colour * len(SHAPES) + kind + 1,
            'place': (kind * GRID_ROWS + shape.row) * GRID_COLS + shape.col + 1,
        }
        poly = _shape_polygon(shape.kind, cx, cy, r)
        for target, fill in [(draw, COLOURS[shape.colour])] + [
            (label_draws[k], v) for k, v in labels.items()
        ]:
            if poly is None:
                target.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
            else:
                target.polygon(poly, fill=fill)
        label_draws['centre'].rectangle([cx - s, cy - s, cx + s, cy + s], fill=1)
    font = _font(max(6, round(14 * s * word_scale)))
    xy = (scene.word_x * s, (WORD_BAND_TOP + 1) * s)
    draw.text(xy, scene.word, fill=(20, 20, 20), font=font)
    left, top, right, bottom = draw.textbbox(xy, scene.word, font=font)
    label_draws['word'].rectangle([left, top, right, bottom], fill=WORDS.index(scene.word) + 1)
    return image, {name: np.asarray(m) for name, m in maps.items()}


def sample_stream(split: str, seed_offset: int = 0):
    """Yields (index, task, scene, question, answer) forever; tasks round-robin, seeds disjoint per split."""
    rng = random.Random(SPLIT_SEEDS[split] + seed_offset)
    i = 0
    while True:
        task = TASKS[i % len(TASKS)]
        scene, question, answer = make_question(rng, task)
        yield i, task, scene, question, answer
        i += 1


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format='PNG')
    return buf.getvalue()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


@dataclass(frozen=True)
class Variant:
    """How a variant of the benchmark differs from the default one.

    Attributes:
        image_scale: image size relative to the base benchmark's.
        word_scale: printed-word size relative to the default rendering.
        max_shots: ``None`` for question/answer samples; otherwise interleaved documents of 0 to
            ``max_shots`` solved examples of one task, then a query of the same task.
        seed_offset: added to the split seeds, so that a variant draws scenes of its own.
        fraction: split sizes relative to the base benchmark's.
    """

    image_scale: int = 1
    word_scale: float = 1.0
    max_shots: int | None = None
    seed_offset: int = 0
    fraction: float = 0.25


# At 128 px the word is drawn with a 10 px font: in a 64 px crop it has 42 dark (< 128) pixels on average
# (the default rendering's word has 67 at 64 px), but 1.4 (at most 4) once the image is downscaled to 64 px:
# measured over 200 scenes; tests/test_anyres.py checks it.
HIRES_WORD_SCALE = 0.36
VARIANTS = {
    'interleaved': Variant(max_shots=2, seed_offset=101),
    'hires': Variant(image_scale=2, word_scale=HIRES_WORD_SCALE, seed_offset=202),
}
DEFAULT_VARIANT = Variant()


def example_stream(split: str, variant: Variant = DEFAULT_VARIANT):
    """Yields (index, task, [(scene, question, answer), ...]) forever: one example per sample, or for a
    few-shot variant the solved examples followed by the query (the last)."""
    if variant.max_shots is None:
        for i, task, scene, question, answer in sample_stream(split, variant.seed_offset):
            yield i, task, [(scene, question, answer)]
        return
    rng = random.Random(SPLIT_SEEDS[split] + variant.seed_offset)
    for i in itertools.count():
        task = TASKS[i % len(TASKS)]
        yield i, task, [make_question(rng, task) for _ in range(rng.randint(0, variant.max_shots) + 1)]


def _conversation_members(key: str, task: str, examples: list, image_size: int, variant: Variant) -> list:
    ((scene, question, answer),) = examples
    image, _ = render(scene, image_size, variant.word_scale)
    record = {
        'conversations': [
            {'from': 'human', 'value': f'<image>\n{question}'},
            {'from': 'gpt', 'value': answer},
        ],
        'task': task,
    }
    return [(f'{key}.png', _png_bytes(image)), (f'{key}.json', json.dumps(record).encode())]


def _document_members(key: str, task: str, examples: list, image_size: int, variant: Variant) -> list:
    """A few-shot interleaved document: per example its image and question (the question before the image
    or after it, drawn per example), then the answer, which is a target (carries loss)."""
    from .templates import ANSWER_PROMPT, format_answer, format_prompt

    layout = random.Random(key)
    texts, targets, members = [], [], []
    for j, (scene, question, answer) in enumerate(examples):
        image, _ = render(scene, image_size, variant.word_scale)
        members.append((f'{key}.{j}.png', _png_bytes(image)))
        segments = (
            [question, None, ANSWER_PROMPT] if layout.random() < 0.5 else [None, format_prompt(question)]
        )
        texts += segments + [format_answer(answer)]
        targets += [False] * len(segments) + [True]
    images = [f'{key}.{j}.png' for j in range(len(examples))]
    image_entries = iter(images)
    record = {
        'texts': texts,
        'images': [next(image_entries) if t is None else None for t in texts],
        'targets': targets,
        'task': task,
    }
    return [(f'{key}.json', json.dumps(record).encode()), *members]


def write_split(
    root: Path,
    split: str,
    num_samples: int,
    image_size: int,
    shard_size: int,
    progress=None,
    variant: Variant = DEFAULT_VARIANT,
) -> dict:
    """Writes ``{split}-{k:05d}.tar`` shards of PNG + conversation JSON (or interleaved documents for a
    few-shot variant); returns each (query) question's answers."""
    answers_by_question: dict[str, Counter] = defaultdict(Counter)
    stream = example_stream(split, variant)
    members_of = _conversation_members if variant.max_shots is None else _document_members
    for shard in range((num_samples + shard_size - 1) // shard_size):
        with tarfile.open(root / f'{split}-{shard:05d}.tar', 'w') as tar:
            for _ in range(min(shard_size, num_samples - shard * shard_size)):
                i, task, examples = next(stream)
                for name, data in members_of(f'{split}{i:07d}', task, examples, image_size, variant):
                    _add_member(tar, name, data)
                _, question, answer = examples[-1]
                answers_by_question[question][answer] += 1
                if progress is not None:
                    progress.update(1)
    return answers_by_question


def question_only_prior(
    train_counts: dict[str, Counter], split: str, num_samples: int, variant: Variant = DEFAULT_VARIANT
) -> dict[str, float]:
    """Accuracy per task of answering each question with its most frequent training answer (no image)."""
    hits, totals = Counter(), Counter()
    for _, task, examples in _take(example_stream(split, variant), num_samples):
        _, question, answer = examples[-1]
        guess = train_counts[question].most_common(1)[0][0] if question in train_counts else ''
        hits[task] += guess == answer
        totals[task] += 1
    prior = {t: 100.0 * hits[t] / totals[t] for t in TASKS if totals[t]}
    prior['overall'] = sum(prior.values()) / len(prior)
    return prior


def _take(stream, n):
    for _ in range(n):
        yield next(stream)


def corpus_lines(split_counts: dict[str, Counter]) -> list[str]:
    """The text a tokenizer is trained on: every prompt and answer of the training split."""
    from .templates import format_prompt

    lines = []
    for question, answers in split_counts.items():
        lines.append(format_prompt(question))
        lines.extend(answers)
    return lines


def shard_urls(root: str | os.PathLike, split: str) -> list[str]:
    """The shard paths of a generated split, in order."""
    manifest = json.loads((Path(root) / 'manifest.json').read_text())
    return [str(Path(root) / name) for name in manifest['splits'][split]['shards']]
