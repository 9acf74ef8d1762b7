"""Conversations rendered through a chat template, with loss on the assistant turns only.

A dataset's ``template`` names how a conversation becomes text:

* ``'vlkit'``: vlkit's own format (:func:`vlkit.data.templates.tokenize_conversation`), the synthetic
  benchmark's; unchanged, so its figures do not move;
* ``'chat'``: the tokenizer's own ``chat_template`` (Jinja), as the language model was tuned with;
* a name of :data:`NAMED_TEMPLATES`, LLaVA's templates for models without a Jinja template: ``'plain'``
  (LLaVA's stage 1: ``<image>``, the caption, ``"\n"``; the human text is dropped) and ``'vicuna_v1'``
  (LLaVA-1.5's ``v1`` conversation). They give LLaVA's token ids and labels (``preprocess_plain`` and
  ``preprocess_v1`` of its ``train.py``; ``tests/test_chat_templates.py`` compares them on LLaVA's own code):
  a human turn's single ``<image>`` is moved to its front, followed by ``"\n"``; a conversation that starts
  with an assistant turn loses it; the text between ``<image>`` markers is tokenized piece by piece with
  the tokenizer's own special tokens (LLaVA's ``tokenizer_image_token``), so the BOS token is there only if
  the tokenizer adds one; every token from the one after the generation prompt (``"ASSISTANT:"``) to the
  turn's end (``</s>``; in ``plain``, the end of the text) carries loss.

Labels through the ``'chat'`` template: the conversation is rendered whole, and each assistant turn is
located after the rendering of the turns before it with the generation prompt (the text a model sees before
it answers). The tokens that overlap the answer's text carry loss, plus the turn's end token (a special
token right after the answer: ``<|eot_id|>``, ``<|im_end|>``, ``<|end|>``, ``</s>``). With any template, an
answer that cannot be located, or that no token covers, is an error naming the sample: its labels are never
all ignored silently.
"""

from __future__ import annotations

from ..constants import IGNORE_INDEX, IMAGE_TOKEN
from .skips import SampleError

PLAIN = (
    '{% for m in messages %}'
    "{% if m['role'] == 'user' %}{{ '<image>' * m['content'].count('<image>') }}"
    "{% elif m['role'] == 'assistant' %}{{ m['content'] + '\n' }}{% endif %}"
    '{% endfor %}'
)
VICUNA_V1_SYSTEM = (
    'A chat between a curious user and an artificial intelligence assistant. '
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
VICUNA_V1 = (
    "{% if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}"
    f'{{% else %}}{VICUNA_V1_SYSTEM}{{% endif %}} '
    '{% for m in messages %}'
    "{% if m['role'] == 'user' %}{{ 'USER: ' + m['content'] + ' ' }}"
    "{% elif m['role'] == 'assistant' %}{{ 'ASSISTANT: ' + m['content'] + eos_token }}{% endif %}"
    '{% endfor %}'
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
NAMED_TEMPLATES = {'plain': PLAIN, 'vicuna_v1': VICUNA_V1}
# transformers' processors pass a message's content as a list of {'type': 'image'} and {'type': 'text'}
# items: this prefix turns them into the text the templates read, the images first ("<image>\n" each, as
# LLaVA's data has them), then the texts; a content of None is empty
LIST_CONTENT = (
    '{%- set flat = namespace(messages=[]) -%}'
    '{%- for m in messages -%}'
    "{%- if m['content'] is string -%}{%- set flat.messages = flat.messages + [m] -%}"
    "{%- else -%}{%- set text = namespace(images='', words='') -%}"
    "{%- for item in m['content'] or [] -%}"
    "{%- if item['type'] == 'image' -%}{%- set text.images = text.images + '<image>\\n' -%}"
    "{%- elif item['type'] == 'text' -%}{%- set text.words = text.words + item['text'] -%}{%- endif -%}"
    '{%- endfor -%}'
    "{%- set flat.messages = flat.messages + [{'role': m['role'], 'content': text.images + text.words}] -%}"
    '{%- endif -%}'
    '{%- endfor -%}'
    '{%- set messages = flat.messages -%}'
)
TEMPLATES = ('vlkit', 'chat', *NAMED_TEMPLATES)
ROLES = {'human': 'user', 'user': 'user', 'gpt': 'assistant', 'assistant': 'assistant', 'system': 'system'}


def jinja_template(template: str, tokenizer) -> str:
    """A dataset ``template`` as a Jinja chat template for other libraries' processors (an export's): the
    named ones and vlkit's own format as Jinja, ``'chat'`` the tokenizer's; each reads a message's content
    as text or as a processor's list of image and text items.

    The rendered text is meant to be tokenized with the tokenizer's own special tokens, as processors do
    (``processor(text=...)``) and as LLaVA's templates are: so vlkit's format, whose training puts the BOS
    token first whether or not the tokenizer adds one, writes it into the text only where the tokenizer does
    not add it itself.
    """
    from .templates import VLKIT_JINJA

    if template != 'vlkit':
        check_template(template, tokenizer)
    source = {'vlkit': VLKIT_JINJA, **NAMED_TEMPLATES}.get(template) or tokenizer.chat_template
    if template == 'vlkit' and tokenizer.bos_token is not None and not _adds_bos(tokenizer):
        source = '{{ bos_token }}' + source
    return LIST_CONTENT + source


def _adds_bos(tokenizer) -> bool:
    ids = tokenizer('a')['input_ids']
    return bool(ids) and ids[0] == tokenizer.bos_token_id


class AnswerSpanError(SampleError):
    """An assistant turn's text is not where the template should have put it."""

    reason = 'answer_not_located'


def check_template(template: str, tokenizer) -> None:
    """Refuses an unknown template name, or ``'chat'`` with a tokenizer that has no chat template."""
    if template not in TEMPLATES:
        raise ValueError(f'unknown template {template!r}; expected one of {TEMPLATES}')
    if template == 'vicuna_v1' and getattr(tokenizer, 'eos_token', None) is None:
        raise ValueError(
            "template='vicuna_v1' ends each answer with the tokenizer's EOS token; this tokenizer has none"
        )
    if template == 'chat' and not getattr(tokenizer, 'chat_template', None):
        raise ValueError(
            "template='chat' needs the tokenizer's chat_template, and this tokenizer has none; name a "
            f'template written for models without one: {sorted(NAMED_TEMPLATES)}'
        )


def to_messages(conversations: list[dict], key: str) -> list[dict]:
    """Turns keyed ``from``/``value`` (LLaVA) or ``role``/``content`` -> ``{'role', 'content'}`` messages
    with the roles ``system``, ``user``, ``assistant``."""
    messages = []
    for i, turn in enumerate(conversations):
        role = turn.get('from', turn.get('role'))
        content = turn.get('value', turn.get('content'))
        if role not in ROLES or not isinstance(content, str):
            raise SampleError(
                f'sample {key!r}: turn {i} needs from/value or role/content with a role of {sorted(ROLES)} '
                f'and text; got {turn!r}',
                reason='bad_conversation',
            )
        messages.append({'role': ROLES[role], 'content': content})
    return messages


def _end_token_ids(tokenizer) -> set[int]:
    """Special tokens that may close a turn (every special or added special token but ``<image>``)."""
    ids = set(tokenizer.all_special_ids)
    ids |= {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    ids.discard(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    return ids


class ChatTokenizer:
    """Token ids and labels of conversations rendered by ``template`` (module docstring), with the compiled
    template and the turn-end ids prepared once (a dataset keeps one; :func:`tokenize_chat` makes one per
    call)."""

    def __init__(self, tokenizer, template: str) -> None:
        check_template(template, tokenizer)
        self.tokenizer = tokenizer
        self.template = template
        self.llava = template in NAMED_TEMPLATES  # LLaVA's preprocessing, tokenization and labels
        self.source = NAMED_TEMPLATES.get(template) or tokenizer.chat_template
        self.compiled = _compile(self.source)
        self.template_kwargs = dict(tokenizer.special_tokens_map)  # what apply_chat_template passes too
        self.end_ids = _end_token_ids(tokenizer)

    def __getstate__(self) -> dict:  # a compiled template does not pickle (spawned data-loader workers)
        return {k: v for k, v in self.__dict__.items() if k != 'compiled'}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, compiled=_compile(state['source']))

    def render(self, messages: list[dict], prompt: bool) -> str:
        return self.compiled.render(
            messages=messages,
            tools=None,
            documents=None,
            add_generation_prompt=prompt,
            **self.template_kwargs,
        )

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and character offsets of rendered text: LLaVA's piecewise tokenization for its
        templates, the text whole (its special tokens written in it) for a Jinja one."""
        if self.llava:
            return tokenize_image_pieces(self.tokenizer, text)
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return encoded['input_ids'], encoded['offset_mapping']

    def __call__(self, messages: list[dict], key: str, for_generation: bool = False) -> dict:
        """Returns ``input_ids`` and ``labels``; with ``for_generation`` the prompt before the last assistant
        turn (generation prompt included) and that turn's text as ``answer``.

        Raises:
            AnswerSpanError: an assistant turn cannot be located in the rendered text.
        """
        if self.llava:
            messages = llava_messages(messages, self.template, key)
        answers = [i for i, m in enumerate(messages) if m['role'] == 'assistant']
        if not answers:
            raise SampleError(f'sample {key!r} has no assistant turn', reason='empty_conversation')
        if for_generation:
            last = answers[-1]
            ids, _ = self.encode(self.render(messages[:last], True))
            return {'input_ids': ids, 'answer': messages[last]['content'].strip()}
        text = self.render(messages, False)
        ids, offsets = self.encode(text)
        labels = [IGNORE_INDEX] * len(ids)
        for i in answers:
            prompt = self.render(messages[:i], True)
            start, end = _answer_span(text, prompt, messages[i]['content'], key, i)
            if self.llava:  # from the generation prompt's end through the turn's end, as LLaVA labels
                start, end = len(prompt), self._turn_end(text, end, key, i)
            covered = [t for t, (a, b) in enumerate(offsets) if a < end and b > start]
            if not covered:
                raise AnswerSpanError(f'sample {key!r}: no token covers the answer of turn {i}')
            for t in covered:
                labels[t] = ids[t]
            after = covered[-1] + 1
            if not self.llava and after < len(ids) and ids[after] in self.end_ids:
                labels[after] = ids[after]
        return {'input_ids': ids, 'labels': labels}

    def _turn_end(self, text: str, answer_end: int, key: str, turn: int) -> int:
        """Where an assistant turn of a LLaVA template ends: after its ``</s>``; in ``plain``, at the end."""
        if self.template == 'plain':
            return len(text)
        eos = self.tokenizer.eos_token
        close = text.find(eos, answer_end)
        if close < 0 or text[answer_end:close].strip():
            raise AnswerSpanError(f'sample {key!r}: turn {turn} does not end with {eos!r} after its answer')
        return close + len(eos)


def llava_messages(messages: list[dict], template: str, key: str) -> list[dict]:
    """A conversation as LLaVA's preprocessing hands it to its template (``preprocess_multimodal``, and
    ``preprocess_v1`` dropping a first turn that is not the human's): a human turn's one ``<image>`` moved
    to its front, followed by ``"\n"``. ``plain`` takes one human turn with ``<image>`` and one answer."""
    if messages and messages[0]['role'] == 'assistant':
        messages = messages[1:]
    moved = [
        dict(m, content=(IMAGE_TOKEN + '\n' + m['content'].replace(IMAGE_TOKEN, '').strip()).strip())
        if m['role'] == 'user' and m['content'].count(IMAGE_TOKEN) == 1
        else m
        for m in messages
    ]
    roles = [m['role'] for m in moved]
    if template == 'plain' and (roles != ['user', 'assistant'] or IMAGE_TOKEN not in moved[0]['content']):
        raise SampleError(
            f"sample {key!r}: template 'plain' (LLaVA's stage 1) takes one human turn with {IMAGE_TOKEN} "
            f'and one answer; got the turns {roles}',
            reason='bad_conversation',
        )
    return moved


def tokenize_image_pieces(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """LLaVA's ``tokenizer_image_token`` with character offsets: the text between ``<image>`` markers
    tokenized piece by piece with the tokenizer's special tokens, the markers' id between the pieces, and
    a BOS that the tokenizer puts before every piece kept before the first only."""
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    pieces, position = [], 0
    for piece in text.split(IMAGE_TOKEN):
        encoded = tokenizer(piece, return_offsets_mapping=True)
        offsets = [(a + position, b + position) for a, b in encoded['offset_mapping']]
        pieces.append((encoded['input_ids'], offsets, position))
        position += len(piece) + len(IMAGE_TOKEN)
    first_ids, first_offsets, _ = pieces[0]
    skip = 1 if first_ids and first_ids[0] == tokenizer.bos_token_id else 0
    ids, offsets = list(first_ids[:skip]), list(first_offsets[:skip])
    for n, (piece_ids, piece_offsets, start) in enumerate(pieces):
        if n:
            ids.append(image_id)
            offsets.append((start - len(IMAGE_TOKEN), start))
        ids += piece_ids[skip:]
        offsets += piece_offsets[skip:]
    return ids, offsets


def _compile(source: str):
    """The Jinja template compiled as ``apply_chat_template`` compiles it (sandboxed, trimmed blocks)."""
    from transformers.utils.chat_template_utils import _compile_jinja_template

    return _compile_jinja_template(source)


def tokenize_chat(
    tokenizer, template: str, messages: list[dict], key: str, for_generation: bool = False
) -> dict:
    """:class:`ChatTokenizer` for one conversation."""
    return ChatTokenizer(tokenizer, template)(messages, key, for_generation)


def _answer_span(text: str, prompt: str, content: str, key: str, turn: int) -> tuple[int, int]:
    """Where turn ``turn``'s answer sits in ``text``: right after ``prompt``, the rendering of the turns
    before it with the generation prompt."""
    answer = content.strip()
    start = text.find(answer, len(prompt)) if answer and text.startswith(prompt) else -1
    if start < 0 or text[len(prompt) : start].strip():
        raise AnswerSpanError(
            f'sample {key!r}: the answer of turn {turn} ({answer[:40]!r}) is not right after its prompt in '
            'the rendered template; the template renders earlier turns differently once later ones follow, '
            'or changes the answer text'
        )
    return start, start + len(answer)
