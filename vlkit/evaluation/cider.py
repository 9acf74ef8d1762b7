"""CIDEr-D and BLEU-4 for captions, with the COCO caption evaluation's own scorers (``pycocoevalcap``).

``pycocoevalcap.cider.Cider`` is the CIDEr-D of the COCO caption server (Vedantam et al. 2015): TF-IDF
weighted n-grams (n = 1..4) with the IDF taken over the references of the evaluated set, candidate
n-gram counts clipped at the reference's, a Gaussian length penalty (sigma 6), the cosine averaged over
n and over the references, times 10. vlkit reports it times 100 more, as papers do (COCO "CIDEr 117.3"
is the scorer's 1.173).

The COCO server tokenises with the Stanford PTB tokenizer (Java). :func:`caption_scores` runs it (the
jar ships with ``pycocoevalcap``) where ``java`` is on the PATH and otherwise falls back to the pure-Python
tokenizer, with a warning, and says which ran; :func:`cider_d` always uses the pure-Python one. That one
follows what the PTB step gives on captions (lower case; clitics split: ``dog 's``, ``is n't``, ``ca n't``,
``can not``; hyphenated words, decimals, times, ``u.s.`` and ``mr.``, ``st.``, ``etc.`` kept whole;
``$ % # @ &`` kept as tokens; brackets as ``-lrb-`` ...; the punctuation pycocoevalcap removes, removed):
tests/test_benchmark_metrics.py holds it equal to the PTB tokenizer on captions of each of those kinds. It is
not the Stanford tokenizer: e-mail addresses, ``c++``, ``rock 'n' roll`` or ``'80s`` split differently.
Because the IDF comes from the evaluated references, a score depends on the whole set: an n-gram found
in every image's references weighs 0, and a set of one image scores 0.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence

from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..registry import METRICS
from .vqa import per_task_means, reference_answers

TOKEN = re.compile(
    r'(?:[a-z]\.){2,}'  # abbreviations: u.s., p.m.
    r'|\b(?:mr|mrs|ms|dr|st|vs|jr|sr|etc|co|inc|ltd|mt)\.'  # and the common titles and short forms
    r"|(?<![a-z0-9])'(?:s|m|d|re|ve|ll)(?![a-z0-9])"  # a clitic already split off: children 's
    r'|\d+(?:[.,:]\d+)+'  # 3.5, 1,000, 10:30
    r"|[a-z0-9]+(?:[-/'][a-z0-9]+)*'?"  # words, hyphenated or with a clitic: t-shirt, and/or, dog's, kids'
    r'|\.\.\.|--|[!?]{2,}|\S'  # punctuation and symbols, one by one ("!!" is one)
)
CLITIC = re.compile(r"(.+?)(n't|'s|'m|'d|'re|'ve|'ll)$")
SPLIT_WORDS = {
    'cannot': ('can', 'not'),
    'gonna': ('gon', 'na'),
    'gotta': ('got', 'ta'),
    'wanna': ('wan', 'na'),
}
BRACKETS = {'(': '-lrb-', ')': '-rrb-', '[': '-lsb-', ']': '-rsb-', '{': '-lcb-', '}': '-rcb-'}
REMOVED = {"'", '"', '`', '.', '?', '!', ',', ':', ';', '-', '--', '...'}  # pycocoevalcap's PUNCTUATIONS


def _ptb_pieces(token: str) -> tuple[str, ...]:
    if token in SPLIT_WORDS:
        return SPLIT_WORDS[token]
    if token.endswith("'") and len(token) > 1:
        return (token[:-1],)  # kids' -> kids (the apostrophe is removed)
    clitic = CLITIC.match(token)
    return clitic.groups() if clitic else (BRACKETS.get(token, token),)


def tokenize_caption(text: str) -> str:
    """A caption as the PTB step of the COCO caption evaluation gives it (module docstring): lower-cased
    tokens separated by single spaces, its punctuation removed."""
    pieces = (piece for token in TOKEN.findall(text.lower()) for piece in _ptb_pieces(token))
    return ' '.join(piece for piece in pieces if piece not in REMOVED)


def cider_d(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]]
) -> tuple[float, list[float]]:
    """CIDEr-D on pycocoevalcap's scale (identical captions of 4+ words unique to their image score 10).

    Args:
        predictions: one caption per image.
        references: the reference captions of each image (a string for one reference).

    Returns:
        The corpus score (the mean over images) and the score of each image.
    """
    from pycocoevalcap.cider.cider import Cider

    if len(predictions) != len(references):
        raise ValueError(f'{len(predictions)} predictions but {len(references)} reference lists')
    if not predictions:
        raise ValueError('CIDEr-D needs at least one caption')
    gts, res = {}, {}
    for i, (pred, refs) in enumerate(zip(predictions, references, strict=True)):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs:
            raise ValueError(f'image {i} (prediction {pred!r}) has no reference caption')
        gts[i] = [tokenize_caption(r) for r in refs]
        res[i] = [tokenize_caption(pred)]
    score, scores = Cider().compute_score(gts, res)
    return float(score), [float(s) for s in scores]


def ptb_tokenizer_available() -> bool:
    return shutil.which('java') is not None


def _tokenized(captions: dict[int, list[str]], tokenizer: str) -> dict[int, list[str]]:
    if tokenizer == 'python':
        return {k: [tokenize_caption(c) for c in v] for k, v in captions.items()}
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    return PTBTokenizer().tokenize({k: [{'caption': c} for c in v] for k, v in captions.items()})


def caption_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]], tokenizer: str = 'auto'
) -> tuple[dict[str, float], list[float], str]:
    """The COCO caption evaluation's CIDEr-D and BLEU-4, x100, over a set of images.

    Args:
        predictions: one caption per image.
        references: the reference captions of each image.
        tokenizer: ``'ptb'`` (Stanford PTB, Java), ``'python'`` (module docstring) or ``'auto'``: PTB where
            ``java`` is on the PATH.

    Returns:
        ``{'CIDEr': ..., 'BLEU_4': ...}``, each image's CIDEr-D (x100) and the tokenizer that ran.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    if tokenizer == 'auto':
        tokenizer = 'ptb' if ptb_tokenizer_available() else 'python'
        if tokenizer == 'python':
            print_log(
                'java is not on the PATH: captions are tokenized by the pure-Python tokenizer, not the COCO '
                "evaluation's PTB one; the scores say so (caption_tokenizer) and may differ slightly",
                logger='current',
                level=30,
            )
    if len(predictions) != len(references) or not predictions:
        raise ValueError(
            f'{len(predictions)} predictions and {len(references)} reference lists; need as many, >= 1'
        )
    gts = _tokenized({i: [r] if isinstance(r, str) else list(r) for i, r in enumerate(references)}, tokenizer)
    res = _tokenized({i: [p] for i, p in enumerate(predictions)}, tokenizer)
    cider, per_image = Cider().compute_score(gts, res)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {'CIDEr': 100.0 * float(cider), 'BLEU_4': 100.0 * float(bleu[3])}
    return scores, [100.0 * float(s) for s in per_image], tokenizer


@METRICS.register_module()
class CIDErD(BaseMetric):
    """CIDEr-D (x100, as papers report it) per task and ``overall`` (the COCO corpus score).

    Consumes the model's predict outputs: dicts with ``prediction``, the reference captions (``answers``,
    or ``answer``: one caption or a list) and optionally ``task``. The IDF is taken over the references
    of all samples together; a task's figure is the mean of its samples' scores.
    """

    default_prefix = 'cider_d'
    overall_definition = (
        'the corpus score: the mean over all images (as the COCO caption evaluation reports it)'
    )

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            self.results.append((s.get('task') or 'all', s['prediction'], reference_answers(s)))

    def compute_metrics(self, results: list) -> dict[str, float]:
        tasks, predictions, references = zip(*results, strict=True)
        _, scores = cider_d(predictions, references)
        return per_task_means(list(zip(tasks, scores, strict=True)))
