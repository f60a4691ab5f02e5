#!/usr/bin/env python3
"""Builds `fixtures/llama_text`: a tiny Llama with a real tokenizer, for strata's text-in,
text-out tests (`strata generate`). Writes only that directory; the other fixtures are made by
make_fixtures.py.

The tokenizer is a byte-level BPE trained with `tokenizers` on the small corpus below, laid out
like Llama 3's (NFC normalizer, the Llama 3 Split regex then ByteLevel without its own regex,
`ignore_merges`, a post-processor that adds <|begin_of_text|>, Llama 3's special tokens and chat
template). The model is a seeded-random Llama whose vocabulary is the tokenizer's. The reference
is transformers' own: prompts tokenized by AutoTokenizer (chat prompts through
apply_chat_template), greedy continuations recomputed from scratch at every step, and the
completion text decode(prompt + generated) minus decode(prompt), skip_special_tokens=True.
Run on a machine with torch, transformers and tokenizers:
    python3 tests/data/make_text_fixture.py tests/data/fixtures
"""
import json
import os
import sys

import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import randomise  # noqa: E402
from make_tokenizer_refs import CORPUS  # noqa: E402

NAME = "llama_text"
SEED = 2024
VOCAB = 384
MAX_TOKENS = 24
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
LLAMA3_TEMPLATE = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                              "chat_templates", "templates.json")))["llama3"]["chat_template"]

PROMPTS = [
    "Once upon a time",
    "The quick brown fox",
    "In 1969, humans",
    "def main():\n    print(",
    "Le café est",
    "東京は日本の",
    "She said: \"I'm not sure",
    "Prices rose 3.5% in",
    "Data labelling, synthetic data",
    "A little robot who wanted",
]
CHATS = [
    [{"role": "user", "content": "Tell me a story about a robot."}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Paint me the sun."}],
]


def train_tokenizer():
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4 + PROMPTS, trainer)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", 0)])
    return tok


def greedy(model, ids, eos):
    seq, margins, logprobs = list(ids), [], []
    with torch.no_grad():
        for _ in range(MAX_TOKENS):
            last = model(input_ids=torch.tensor([seq])).logits[0, -1].float()
            top2 = torch.topk(last, 2).values
            margins.append(float(top2[0] - top2[1]))
            nxt = int(torch.argmax(last))
            logprobs.append(float(torch.log_softmax(last.double(), -1)[nxt]))
            seq.append(nxt)
            if nxt in eos:
                break
    gen = seq[len(ids):]
    return gen, margins, logprobs, ("stop" if gen[-1] in eos else "length")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures")
    path = os.path.join(out_dir, NAME)
    os.makedirs(path, exist_ok=True)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)

    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(), bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
        clean_up_tokenization_spaces=False, model_max_length=512)
    fast.chat_template = LLAMA3_TEMPLATE
    fast.save_pretrained(path)

    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        rms_norm_eps=1e-5, rope_theta=500000.0, bos_token_id=0, eos_token_id=[1, 4],
        tie_word_embeddings=False)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model.eval()
    randomise(model, gen)
    model.save_pretrained(path, safe_serialization=True)

    tok = transformers.AutoTokenizer.from_pretrained(path)
    eos = {1, 4}

    def record(prompt_ids, extra):
        g, margins, lps, finish = greedy(model, prompt_ids, eos)
        full = tok.decode(prompt_ids + g, skip_special_tokens=True)
        head = tok.decode(prompt_ids, skip_special_tokens=True)
        assert full.startswith(head), (full, head)
        return dict(extra, prompt_ids=prompt_ids, max_tokens=MAX_TOKENS, generated=g,
                    text=full[len(head):], finish_reason=finish, logprobs=lps,
                    min_top2_margin=min(margins))

    cases = [record(tok(p).input_ids, {"kind": "completion", "prompt": p}) for p in PROMPTS]
    for m in CHATS:
        rendered = tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
        ids = tok(rendered, add_special_tokens=False).input_ids
        cases.append(record(ids, {"kind": "chat", "messages": m, "rendered": rendered}))
    with open(os.path.join(path, "reference.json"), "w") as f:
        json.dump({"fixture": NAME, "seed": SEED, "cases": cases,
                   "made_with": {"torch": torch.__version__, "transformers": transformers.__version__},
                   "attn_implementation": "eager", "compute_dtype": "float32"},
                  f, indent=1, ensure_ascii=False)
    print(f"{NAME}: {len(cases)} cases, min top-2 margin {min(c['min_top2_margin'] for c in cases):.4f}, "
          f"finish {[c['finish_reason'] for c in cases]}")


if __name__ == "__main__":
    main()
