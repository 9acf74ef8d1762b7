"""The standard benchmarks' metrics on hand-worked cases, their submission files, and their configs."""

from __future__ import annotations

import json
import math

import pytest

from vlkit.evaluation import BenchmarkVQAAccuracy, COCOCaption, GQAAccuracy, VizWizAccuracy, benchmark
from vlkit.evaluation.cider import caption_scores, ptb_tokenizer_available, tokenize_caption


def _run(metric, samples: list[dict]) -> dict:
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def test_gqa_exact_match_per_type_and_its_submission(tmp_path):
    samples = [
        dict(prediction='Red.', answer=['red'], task='query', meta={'question_id': '201'}),  # case, period
        dict(prediction='no', answer=['yes'], task='verify', meta={'question_id': '202'}),
        dict(
            prediction='the table', answer=['table'], task='query', meta={'question_id': '203'}
        ),  # no article rule
    ]
    path = tmp_path / 'gqa.json'
    scores = _run(GQAAccuracy(submission_file=str(path)), samples)
    assert scores == {'query': 50.0, 'verify': 0.0, 'overall': pytest.approx(100 / 3)}
    assert json.loads(path.read_text()) == [  # as scored: GQA's eval.py matches strings exactly
        {'questionId': '201', 'prediction': 'red'},
        {'questionId': '202', 'prediction': 'no'},
        {'questionId': '203', 'prediction': 'the table'},
    ]


def test_vizwiz_scores_unanswerable_like_any_answer():
    """q1: 9 of 10 say unanswerable, the model says "Unanswerable" -> each 9-subset has >= 8 matches: 1.
    q2: answers 2 x "soup", 8 others; "soup" -> subsets without a soup voter (8 of them) have 2 matches
    (2/3), the 2 with one have 1 (1/3): (8 * 2/3 + 2 * 1/3) / 10 = 0.6. q3: "unanswerable" against 10
    x "dog": 0."""
    unanswerable = ['unanswerable'] * 9 + ['sofa']
    samples = [
        dict(
            prediction='Unanswerable',
            answer=unanswerable,
            meta={'image_name': 'a.jpg', 'answer_type': 'unanswerable'},
        ),
        dict(
            prediction='soup',
            answer=['soup'] * 2 + ['can'] * 8,
            meta={'image_name': 'b.jpg', 'answer_type': 'other'},
        ),
        dict(
            prediction='unanswerable',
            answer=['dog'] * 10,
            meta={'image_name': 'c.jpg', 'answer_type': 'other'},
        ),
    ]
    scores = _run(VizWizAccuracy(), samples)
    assert scores['unanswerable'] == pytest.approx(100.0)
    assert scores['other'] == pytest.approx(30.0) and scores['overall'] == pytest.approx(160 / 3)
    # EvalAI's processing, as lmms-eval scores VizWiz: commas deleted on both sides, human answers lower-cased
    comma = [
        dict(prediction='Red,White', answer=['Redwhite'] * 3 + ['red'] * 7, meta={'answer_type': 'other'})
    ]
    assert _run(VizWizAccuracy(), comma)['overall'] == pytest.approx(90.0)


def test_textvqa_scores_with_evalai_answer_processing_vqav2_with_the_official_one():
    """3 of 10 humans wrote "The top of a bottle", 7 "bottle". EvalAI's processor (TextVQA, as LLaVA and
    lmms-eval score it) normalises the human answers as the prediction: 3 matches, 0.9. VQAv2's official
    script processes only their punctuation: "The top of a bottle" is not "top of bottle", 0."""
    answers = ['The top of a bottle'] * 3 + ['bottle'] * 7
    sample = [dict(prediction='top of bottle', answer=answers, meta={'question_id': 1})]
    assert benchmark('textvqa').metric_options == {'answer_processing': 'evalai'}
    textvqa = BenchmarkVQAAccuracy(**benchmark('textvqa').metric_options)
    assert _run(textvqa, sample)['overall'] == pytest.approx(90.0)
    assert _run(BenchmarkVQAAccuracy(**benchmark('vqav2').metric_options), sample)['overall'] == 0.0
    with pytest.raises(ValueError, match=r"answer_processing='m4c': expected one of \('vqa', 'evalai'\)"):
        BenchmarkVQAAccuracy(answer_processing='m4c')


def test_vqa_benchmark_metric_writes_the_vqav2_submission(tmp_path):
    path = tmp_path / 'sub.json'
    samples = [dict(prediction='two', answer=['2'] * 10, task='number', meta={'question_id': 7})]
    assert _run(BenchmarkVQAAccuracy(submission_file=str(path)), samples)['overall'] == 100.0  # two -> 2
    assert json.loads(path.read_text()) == [{'question_id': 7, 'answer': 'two'}]


def test_questions_without_answers_are_written_not_scored_and_a_test_dev_file_is_padded(tmp_path):
    questions = tmp_path / 'v2_OpenEnded_mscoco_test2015_questions.json'
    questions.write_text(json.dumps({'questions': [{'question_id': q} for q in (3, 1, 2)]}))
    path = tmp_path / 'sub.json'
    samples = [
        dict(prediction='red', answer=['red'] * 10, meta={'question_id': 1}),
        dict(prediction='blue', answer='', meta={'question_id': 2}),  # a test question: no answers
    ]
    metric = BenchmarkVQAAccuracy(submission_file=str(path), submission_questions=str(questions))
    assert _run(metric, samples) == {'all': 100.0, 'overall': 100.0}  # the one with answers
    assert json.loads(path.read_text()) == [
        {'question_id': 3, 'answer': ''},  # not evaluated: an empty answer, in the questions file's order
        {'question_id': 1, 'answer': 'red'},
        {'question_id': 2, 'answer': 'blue'},
    ]
    assert _run(GQAAccuracy(), [dict(prediction='x', answer='', meta={})]) == {}
    captions = COCOCaption(submission_file=str(tmp_path / 'captions.json'))
    assert _run(captions, [dict(prediction='a cat', meta={'image_id': 9})]) == {}  # COCO's test images
    assert json.loads((tmp_path / 'captions.json').read_text()) == [{'image_id': 9, 'caption': 'a cat'}]
    other = tmp_path / 'other.json'
    other.write_text(json.dumps({'questions': [{'question_id': 9}]}))
    with pytest.raises(ValueError, match=r'2 evaluated questions are not in .*other.json \(e.g. 1\)'):
        _run(BenchmarkVQAAccuracy(submission_file=str(path), submission_questions=str(other)), samples)
    with pytest.raises(ValueError, match=r'submission_questions .*captions.json: not a VQAv2 questions file'):
        BenchmarkVQAAccuracy(submission_file=str(path), submission_questions=str(tmp_path / 'captions.json'))
    with pytest.raises(ValueError, match='submission_questions pads a VQAv2 submission'):
        VizWizAccuracy(submission_file=str(path), submission_questions=str(questions))


def test_bleu4_and_cider_by_hand():
    """Identical captions: BLEU-4 = 100, CIDEr-D = 10 per image (x100). "a red bus on" against "a red bus
    on the street": every n-gram matches, brevity penalty exp(1 - 6/4) -> BLEU-4 = 100 * e^-0.5."""
    refs = [['a red bus on the street'], ['two dogs play on the beach']]
    same, _, _ = caption_scores(['a red bus on the street', 'two dogs play on the beach'], refs, 'python')
    assert same['BLEU_4'] == pytest.approx(100.0, abs=1e-4) and same['CIDEr'] == pytest.approx(
        1000.0, abs=1e-3
    )
    short, _, _ = caption_scores(['a red bus on'], [['a red bus on the street']], 'python')
    assert short['BLEU_4'] == pytest.approx(100 * math.exp(-0.5), abs=1e-4)


def test_caption_metric_says_which_tokenizer_ran(tmp_path, monkeypatch):
    samples = [
        dict(
            prediction='A red bus, on the street.', answer=['a red bus on the street'], meta={'image_id': 1}
        ),
        dict(prediction='two dogs', answer=['two dogs play on the beach'], meta={'image_id': 2}),
    ]
    metric = COCOCaption(submission_file=str(tmp_path / 'coco.json'))
    scores = _run(metric, samples)
    assert metric.tokenizer_used == 'ptb'  # java is on this machine's PATH
    assert json.loads((tmp_path / 'coco.json').read_text())[1] == {'image_id': 2, 'caption': 'two dogs'}
    monkeypatch.setenv('PATH', '/nonexistent')
    fallback = COCOCaption()
    assert _run(fallback, samples) == pytest.approx(scores) and fallback.tokenizer_used == 'python'


# caption -> what pycocoevalcap's PTBTokenizer gives (Stanford CoreNLP, then its punctuation removal)
PTB_CASES = [
    ('A man in a t-shirt riding a skateboard.', 'a man in a t-shirt riding a skateboard'),
    ("The dog's toy isn't on the sofa.", "the dog 's toy is n't on the sofa"),
    ("A cat can't reach the 3.5 inch shelf, won't it?", "a cat ca n't reach the 3.5 inch shelf wo n't it"),
    (
        'Two people (a man and a woman) stand near a "STOP" sign.',
        'two people -lrb- a man and a woman -rrb- stand near a stop sign',
    ),
    ("A plate with pizza, salad; it's 1,000 calories!", "a plate with pizza salad it 's 1,000 calories"),
    ('A sign that reads "U.S. Route 66" at 5 p.m.', 'a sign that reads u.s. route 66 at 5 p.m.'),
    ('A bus -- red and white -- drives down the street...', 'a bus red and white drives down the street'),
    ("Kids' bikes and the children's toys", "kids bikes and the children 's toys"),
    ('A cafe & bar with $5 drinks and 50% off', 'a cafe & bar with $ 5 drinks and 50 % off'),
    ('An and/or sign, #1 in the world @ night', 'an and/or sign # 1 in the world @ night'),
    ("I'm sure they've said we'll go, you'd see", "i 'm sure they 've said we 'll go you 'd see"),
    (
        "Cannot believe it's a man's world: a woman's hat",
        "can not believe it 's a man 's world a woman 's hat",
    ),
    ('A 12-year-old boy plays, 10:30 am, on track 9.', 'a 12-year-old boy plays 10:30 am on track 9'),
    ("A `quoted' thing and ''another'' one", 'a quoted thing and another one'),
    ('A wave on top of a surfboard!!', 'a wave on top of a surfboard !!'),
    ('   Extra   spaces  and\ttabs here  ', 'extra spaces and tabs here'),
    ("Mr. Smith and Dr. Who on St. Mark's street", "mr. smith and dr. who on st. mark 's street"),
    ('apples, pears, etc. on a table vs. a flag', 'apples pears etc. on a table vs. a flag'),
    ("the children 's toys and it 's fine", "the children 's toys and it 's fine"),
    ('He is first. Then she is last.', 'he is first then she is last'),
]


def test_the_python_caption_tokenizer_gives_what_the_ptb_one_gives():
    assert [tokenize_caption(caption) for caption, _ in PTB_CASES] == [tokens for _, tokens in PTB_CASES]


@pytest.mark.skipif(not ptb_tokenizer_available(), reason='the PTB tokenizer needs java')
def test_the_ptb_cases_are_what_the_ptb_tokenizer_gives():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenized = PTBTokenizer().tokenize({i: [{'caption': c}] for i, (c, _) in enumerate(PTB_CASES)})
    assert [tokenized[i][0] for i in range(len(PTB_CASES))] == [tokens for _, tokens in PTB_CASES]


@pytest.mark.parametrize('name', ['vqav2', 'okvqa', 'textvqa', 'gqa', 'vizwiz', 'coco_caption'])
def test_benchmark_configs_use_the_benchmark_prompt_and_metric(name):
    from mmengine.config import Config

    cfg = Config.fromfile(f'configs/_base_/data/{name}.py')
    bench = benchmark(name)
    dataset = cfg.test_dataloader.dataset
    assert dataset.question_prompt == bench.question_prompt and dataset.caption_prompt == bench.caption_prompt
    assert (
        cfg.test_evaluator.type == bench.metric and cfg.model_settings.max_new_tokens == bench.max_new_tokens
    )
    assert {k: cfg.test_evaluator[k] for k in bench.metric_options} == bench.metric_options


def test_textvqa_ocr_tokens_are_a_named_option():
    assert (
        benchmark('textvqa').notes == {'ocr_tokens': False}
        and '{ocr_tokens}' not in benchmark('textvqa').question_prompt
    )
    assert benchmark('textvqa', ocr_tokens=True).question_prompt.startswith(
        '{question}\nReference OCR token: {ocr_tokens}'
    )
    with pytest.raises(KeyError, match="unknown benchmark 'vqa3'"):
        benchmark('vqa3')
