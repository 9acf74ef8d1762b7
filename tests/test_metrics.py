"""Exact match, VQA accuracy and CIDEr-D on examples checked by hand."""

import pytest

from vlkit.evaluation import cider_d, normalize_answer, normalize_vqa_answer, vqa_score
from vlkit.registry import METRICS


def test_exact_match_scores_each_task_and_averages_the_tasks_equally():
    metric = METRICS.build(dict(type='ExactMatchAccuracy'))
    outputs = [
        dict(prediction='Red.', answer='red', task='colour'),  # case and final period do not count
        dict(prediction='blue', answer='red', task='colour'),
        dict(prediction='red square', answer='red  square', task='colour'),  # inner spaces do not count
        dict(prediction='three', answer='three', task='count'),
        dict(prediction='cat', answer='dog', task='text'),
    ]
    metric.process({}, outputs)
    result = metric.evaluate(len(outputs))
    # colour 2 of 3, count 1 of 1, text 0 of 1; overall is the mean of the three tasks, not of the 5 answers
    assert result == pytest.approx(
        {'exact_match/colour': 200 / 3, 'exact_match/count': 100.0, 'exact_match/text': 0.0,
         'exact_match/overall': (200 / 3 + 100 + 0) / 3}
    )  # fmt: skip
    assert normalize_answer('  A  Red Square. ') == 'a red square'


@pytest.mark.parametrize(
    'raw, expected',
    [
        ('Two dogs.', '2 dogs'),  # number word, capital, trailing period
        ('the Dog', 'dog'),  # article
        ('an apple and a pear', 'apple and pear'),
        ('dont know', "don't know"),  # contraction gets its apostrophe
        ('black/white', 'black white'),  # a mark inside a word becomes a space
        ('yes !', 'yes'),  # a mark next to a space is deleted
        ('1,000', '1000'),  # digits around a comma: marks are deleted
        ('3.5', '3.5'),  # a period before a digit stays
        ('  none\n', '0'),
    ],
)
def test_vqa_normalisation_follows_the_official_script(raw, expected):
    assert normalize_vqa_answer(raw) == expected


@pytest.mark.parametrize(
    'matching, expected',
    # leave-one-out over 10 humans: k matching humans each see k - 1 others match, the 10 - k others see k
    [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)],
)
def test_vqa_score_is_the_leave_one_out_average(matching, expected):
    answers = ['dog'] * matching + ['cat'] * (10 - matching)
    assert vqa_score('dog', answers) == pytest.approx(expected)


def test_vqa_score_processes_human_answers_as_the_official_script_and_a_single_answer_as_exact_match():
    assert vqa_score('Two', ['2'] * 10) == 1.0  # the prediction is normalised
    assert vqa_score('A red car.', ['red car', 'car'] * 5) == 1.0
    # disagreeing human answers lose their punctuation only ("black/white" -> "black white"); not their case
    assert vqa_score('black white', ['black/white'] * 3 + ['grey'] * 7) == pytest.approx(0.9)
    assert vqa_score('red', ['Red'] * 3 + ['grey'] * 7) == 0.0
    assert vqa_score('red', ['Red'] * 10) == 0.0  # unanimous answers are compared as they are
    assert vqa_score('red', ['Red'] * 3 + ['grey'] * 7, processing='evalai') == pytest.approx(0.9)
    assert vqa_score("the dog's bowl?", ["dog 's bowl"] * 10, processing='evalai') == 1.0
    assert vqa_score('red', 'Red.') == 1.0  # one reference: normalised like the prediction
    assert vqa_score('blue', 'red') == 0.0
    with pytest.raises(ValueError, match='at least one reference'):
        vqa_score('red', [])


def test_vqa_metric_reports_tasks_and_the_mean_over_questions():
    metric = METRICS.build(dict(type='VQAAccuracy'))
    outputs = [
        dict(prediction='dog', answers=['dog'] * 3 + ['cat'] * 7, task='animal'),  # 0.9
        dict(prediction='Two', answer='2', task='count'),  # 1.0
        dict(prediction='three', answer='2', task='count'),  # 0.0
    ]
    metric.process({}, outputs)
    result = metric.evaluate(len(outputs))
    assert result['vqa/animal'] == pytest.approx(90.0)
    assert result['vqa/count'] == pytest.approx(50.0)
    assert result['vqa/overall'] == pytest.approx(100 * 1.9 / 3)


def test_vqa_metric_names_the_missing_answer_key():
    metric = METRICS.build(dict(type='VQAAccuracy'))
    with pytest.raises(KeyError, match="'answers' or 'answer'.*prediction"):
        metric.process({}, [dict(prediction='dog', task='animal')])


# CIDEr-D: every n-gram below is found in one image's references only, so its IDF is log(2) for a set of
# two images, and every candidate n-gram weighs log(2) too (unseen n-grams count as document frequency 1).


def test_cider_of_identical_and_disjoint_captions():
    refs = [['a red square left of a blue circle'], ['two green triangles above one yellow star']]
    score, _ = cider_d(
        ['A red square, left of a blue circle.', 'two green triangles above one yellow star'], refs
    )
    assert score == pytest.approx(10.0)  # every n-gram cosine 1, no length penalty
    score, scores = cider_d(['purple hexagons everywhere here', 'nothing alike at all'], refs)
    assert score == 0.0 and scores == [0.0, 0.0]


def test_cider_hand_computed():
    # image 0: candidate "a b x y" against "a b c d": unigram cosine 2w^2 / (2w * 2w) = 1/2, bigrams
    # {ab, bx, xy} vs {ab, bc, cd}: 1/3, no common 3- or 4-gram, equal lengths -> 10 * (1/2 + 1/3) / 4.
    # image 1: identical 4-word caption -> 10. Corpus score: the mean.
    score, scores = cider_d(['a b x y', 'e f g h'], [['a b c d'], ['e f g h']])
    assert scores == pytest.approx([25 / 12, 10.0])
    assert score == pytest.approx((25 / 12 + 10) / 2)


def test_cider_short_captions_and_shared_words():
    # "a" is in both images' references: IDF log(2) - log(2) = 0. Two-word captions have no 3/4-grams,
    # so even identical captions score 10 * (1 + 1 + 0 + 0) / 4 = 5.
    score, _ = cider_d(['a cat', 'a dog'], [['a cat'], ['a dog']])
    assert score == pytest.approx(5.0)


def test_cider_metric_scales_by_100_per_task():
    metric = METRICS.build(dict(type='CIDErD'))
    metric.process(
        {},
        [
            dict(prediction='a b x y', answer='a b c d', task='caption'),
            dict(prediction='e f g h', answers=['e f g h'], task='caption'),
            dict(prediction='i j k l', answer='m n o p', task='other'),
        ],
    )
    result = metric.evaluate(3)
    # three images: IDF log(3); image scores as in the hand-computed case, and 0 for the disjoint one
    assert result['cider_d/caption'] == pytest.approx(100 * (25 / 12 + 10) / 2)
    assert result['cider_d/other'] == 0.0
    assert result['cider_d/overall'] == pytest.approx(100 * (25 / 12 + 10) / 3)


def test_cider_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match='2 predictions but 1 reference'):
        cider_d(['a', 'b'], [['a']])
    with pytest.raises(ValueError, match='image 0 .* has no reference'):
        cider_d(['a'], [[]])
