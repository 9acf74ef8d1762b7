"""The synthetic benchmark's questions: answers that fit the scene, priors at chance, format 2's tasks."""

import random
from collections import Counter, defaultdict

import pytest

from vlkit.data import synthetic


def _draws(task: str, n: int, seed: int):
    rng = random.Random(seed)
    return [synthetic.make_question(rng, task) for _ in range(n)]


def _question_only_accuracy(task: str, n: int = 3000) -> float:
    """Answering each held-out question with its most frequent answer in ``n`` training draws (%)."""
    counts = defaultdict(Counter)
    for _, question, answer in _draws(task, n, seed=1):
        counts[question][answer] += 1
    held_out = _draws(task, n, seed=2)
    hits = sum(counts[q].most_common(1)[0][0] == a for _, q, a in held_out if q in counts)
    return 100.0 * hits / len(held_out)


@pytest.mark.parametrize('task', synthetic.TASKS)
def test_the_question_alone_answers_at_chance(task):
    # 3,000 held-out questions: one standard error is at most 0.9 points, so 4 points is over 4 of them
    assert abs(_question_only_accuracy(task) - 100 * synthetic.CHANCE[task]) < 4


def test_every_answer_is_drawn_about_equally_often():
    for task in synthetic.TASKS:
        answers = Counter(a for _, _, a in _draws(task, 3000, seed=3))
        expected = 3000 / len(answers)
        assert max(abs(c - expected) for c in answers.values()) < 0.2 * expected, (task, answers)


def test_a_spatial_answer_is_the_named_shape_further_left():
    first_named = Counter()
    for scene, question, answer in _draws('spatial', 400, seed=4):
        words = question.split()  # which is further left , the A or the B ?
        a, b = words[6], words[9]
        assert words[:4] == ['which', 'is', 'further', 'left'] and answer in (a, b) and a != b
        col = {s.kind: s.col for s in scene.shapes}
        assert col[answer] < col[b if answer == a else a]
        first_named[answer == a] += 1
    assert len(first_named) == 2  # the first and the second named shape each answer some


def test_a_position_answer_is_the_shape_in_the_named_cell():
    for scene, question, answer in _draws('position', 400, seed=5):
        words = question.split()  # which shape is in the ROW row , COLUMN column ?
        row, col = synthetic.ROWS.index(words[5]), synthetic.COLUMNS.index(words[8])
        assert [s.kind for s in scene.shapes if (s.row, s.col) == (row, col)] == [answer]
        assert len({s.kind for s in scene.shapes}) == len(scene.shapes)  # kinds stay distinct


def test_the_place_label_names_shape_and_cell():
    scene = synthetic.Scene([synthetic.Shape('triangle', 'red', col=3, row=1)], 'cat', 10, [(0, 0)])
    _, maps = synthetic.render(scene)
    kind = synthetic.SHAPES.index('triangle')
    expected = (kind * synthetic.GRID_ROWS + 1) * synthetic.GRID_COLS + 3 + 1
    assert set(maps['place'].flatten()) == {0, expected} and expected < synthetic.LABEL_MAPS['place']
