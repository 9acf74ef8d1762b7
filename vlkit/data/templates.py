"""How conversations become token ids and labels (loss on answer tokens only)."""

from __future__ import annotations

from ..constants import IGNORE_INDEX

ANSWER_PROMPT = 'answer :'
# the same format as a Jinja chat template, for other libraries' processors (an export's): each human turn
# stripped then "\nanswer :", each answer " " + stripped + EOS (the BOS token: vlkit.data.chat.jinja_template)
VLKIT_JINJA = (
    '{% for m in messages %}'
    "{% if m['role'] == 'user' %}{{ m['content'] | trim }}{{ '\\n" + ANSWER_PROMPT + "' }}"
    "{% elif m['role'] == 'assistant' %}{{ ' ' + (m['content'] | trim) + eos_token }}{% endif %}"
    '{% endfor %}'
)


def format_prompt(human: str) -> str:
    """The text before an answer: the human turn (with its ``<image>`` markers), then ``answer :``."""
    return f'{human.strip()}\n{ANSWER_PROMPT}'


def format_answer(gpt: str) -> str:
    return f' {gpt.strip()}'


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)['input_ids']


def tokenize_conversation(tokenizer, conversations: list[dict], for_generation: bool = False) -> dict:
    """Token ids and labels of alternating human/gpt turns.

    Returns ``input_ids`` and ``labels`` (prompt positions -100; each answer and its end-of-sequence token
    carry loss). With ``for_generation`` the last answer is left out of the ids and returned as ``answer``.
    """
    turns = [(c.get('from'), c.get('value')) for c in conversations]
    if not turns or len(turns) % 2 or any(r != ('human', 'gpt')[i % 2] for i, (r, _) in enumerate(turns)):
        raise ValueError(f'conversations must alternate human/gpt turns, got roles {[r for r, _ in turns]}')
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    labels = [IGNORE_INDEX] * len(ids)
    pairs = list(zip(turns[::2], turns[1::2], strict=True))
    for n, ((_, human), (_, gpt)) in enumerate(pairs):
        prompt = _encode(tokenizer, format_prompt(human))
        ids += prompt
        labels += [IGNORE_INDEX] * len(prompt)
        if for_generation and n == len(pairs) - 1:
            return {'input_ids': ids, 'answer': gpt.strip()}
        answer = _encode(tokenizer, format_answer(gpt)) + [tokenizer.eos_token_id]
        ids += answer
        labels += answer
    return {'input_ids': ids, 'labels': labels}
