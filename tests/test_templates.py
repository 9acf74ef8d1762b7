import pytest

from vlkit.constants import IGNORE_INDEX
from vlkit.data.templates import format_prompt, tokenize_conversation


@pytest.fixture(scope='module')
def tokenizer(synthetic_root):
    from vlkit.tokenization import build_tokenizer

    return build_tokenizer(dict(type='synthetic_tokenizer', data_root=synthetic_root))


def _conv(*turns):
    return [{'from': r, 'value': v} for r, v in zip(['human', 'gpt'] * len(turns), turns, strict=False)]


def test_only_answer_tokens_and_eos_carry_loss(tokenizer):
    out = tokenize_conversation(tokenizer, _conv('<image>\nwhat colour is the circle ?', 'red'))
    ids, labels = out['input_ids'], out['labels']
    supervised = [
        tokenizer.convert_ids_to_tokens(i) for i, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX
    ]
    assert supervised == ['red', tokenizer.eos_token]
    assert [lab for lab in labels if lab != IGNORE_INDEX] == [ids[-2], ids[-1]]
    assert tokenizer.convert_ids_to_tokens(ids[0]) == tokenizer.bos_token
    assert ids.count(tokenizer.convert_tokens_to_ids('<image>')) == 1


def test_multi_turn_supervises_every_answer(tokenizer):
    out = tokenize_conversation(
        tokenizer, _conv('<image>\nhow many shapes are there ?', 'two', 'what word is written ?', 'cat')
    )
    supervised = [
        tokenizer.convert_ids_to_tokens(i)
        for i, lab in zip(out['input_ids'], out['labels'], strict=True)
        if lab != IGNORE_INDEX
    ]
    assert supervised == ['two', tokenizer.eos_token, 'cat', tokenizer.eos_token]


def test_generation_prompt_stops_before_the_last_answer(tokenizer):
    out = tokenize_conversation(
        tokenizer, _conv('<image>\nwhat word is written ?', 'cat'), for_generation=True
    )
    assert out['answer'] == 'cat' and 'labels' not in out
    text = tokenizer.decode(out['input_ids'], skip_special_tokens=False)
    assert text.endswith(format_prompt('what word is written ?').split('\n')[-1])


def test_conversation_with_bad_roles_is_refused(tokenizer):
    with pytest.raises(ValueError, match="alternate human/gpt.*\\['gpt', 'human'\\]"):
        tokenize_conversation(tokenizer, [{'from': 'gpt', 'value': 'x'}, {'from': 'human', 'value': 'y'}])
