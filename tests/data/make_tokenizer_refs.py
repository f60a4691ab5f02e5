#!/usr/bin/env python3
"""Reference encodings, decodings and chat-template renderings for strata's text tests.

Run on a machine with the `tokenizers` and `transformers` packages (nothing is downloaded):
    python3 tests/data/make_tokenizer_refs.py tests/data

1. Trains `tokenizers/metaspace_nfkc/tokenizer.json`: a small SentencePiece-style BPE with byte
   fallback, an NFKC normalizer, a Metaspace pre-tokenizer (prepend_scheme "first"), a non-special
   added token and a special token with lstrip, trained on the texts below (so it covers the
   components the GPT-2 and Llama-2 files do not).
2. For every `tokenizers/<name>/tokenizer.json`, encodes each string of `tokenizers/texts.json`
   with `add_special_tokens` true and false and decodes the ids with and without
   `skip_special_tokens`, writing `tokenizers/<name>/reference.json`.
3. Renders `chat_templates/conversations.json` with each template of
   `chat_templates/templates.json` through transformers' `apply_chat_template`
   (add_generation_prompt=True), writing `chat_templates/renderings.json`.
"""
import json
import os
import sys

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

CORPUS = [
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.",
    "Once upon a time there was a little robot who wanted to learn how to paint.",
    "In 1969, humans first walked on the Moon; 50 years later we still look up.",
    "def main():\n    print('hello, world')\n    return 0\n",
    "Prices rose 3.5% in March, then fell by 1,200 points over two weeks.",
    "Le café est très bon à Paris, mais le thé est meilleur à Londres.",
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
    "She said: \"I'm not sure we'll make it,\" and they didn't.",
    "Data labelling, synthetic data, evaluation sweeps and document processing.",
    "ﬁrst ﬂoor, ① ② ③, Ⅻ o'clock, ＦＵＬＬ ｗｉｄｔｈ text.",
]


def train_metaspace_nfkc(texts):
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("``", '"')])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="\u2581", prepend_scheme="first"),
                                     decoders.ByteFallback(), decoders.Fuse()])
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=["<unk>", "<s>", "</s>"],
                                  show_progress=False)
    tok.train_from_iterator(CORPUS * 3 + texts, trainer)
    # Lay the vocabulary out as Llama does: specials, then the 256 byte tokens, then the pieces.
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    pieces = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t not in ("<unk>", "<s>", "</s>")]
    new_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        new_vocab[f"<0x{b:02X}>"] = len(new_vocab)
    for t in pieces:
        if t not in new_vocab:
            new_vocab[t] = len(new_vocab)
    j["model"]["vocab"] = new_vocab
    tok = Tokenizer.from_str(json.dumps(j))
    tok.add_tokens([AddedToken("<tool>", normalized=False, special=False)])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


def references(tok, texts):
    out = []
    for t in texts:
        rec = {"text": t}
        for add in (True, False):
            ids = tok.encode(t, add_special_tokens=add).ids
            key = "ids" if add else "ids_no_special"
            rec[key] = ids
        rec["decoded"] = tok.decode(rec["ids"], skip_special_tokens=False)
        rec["decoded_skip_special"] = tok.decode(rec["ids"], skip_special_tokens=True)
        out.append(rec)
    return out


def render_chats(root, llama2_tokenizer_file):
    from transformers import PreTrainedTokenizerFast
    import transformers
    templates = json.load(open(os.path.join(root, "chat_templates", "templates.json")))
    convs = json.load(open(os.path.join(root, "chat_templates", "conversations.json")))
    out = {"made_with": {"transformers": transformers.__version__}, "renderings": []}
    for family, t in templates.items():
        fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_file(llama2_tokenizer_file),
                                       bos_token=t["bos_token"], eos_token=t["eos_token"])
        for i, conv in enumerate(convs):
            rec = {"family": family, "conversation": i}
            try:
                rec["rendered"] = fast.apply_chat_template(conv, chat_template=t["chat_template"],
                                                           tokenize=False, add_generation_prompt=True)
            except Exception as e:  # the template's raise_exception
                rec["error"] = str(e)
            out["renderings"].append(rec)
    with open(os.path.join(root, "chat_templates", "renderings.json"), "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    tok_root = os.path.join(root, "tokenizers")
    texts = json.load(open(os.path.join(tok_root, "texts.json")))
    texts_extra = texts + ["call <tool> now  <mask>here and ``quoted``", "<mask>first", "x <tool><tool> y"]
    os.makedirs(os.path.join(tok_root, "metaspace_nfkc"), exist_ok=True)
    train_metaspace_nfkc(texts).save(os.path.join(tok_root, "metaspace_nfkc", "tokenizer.json"))
    for name in sorted(os.listdir(tok_root)):
        path = os.path.join(tok_root, name, "tokenizer.json")
        if not os.path.isfile(path):
            continue
        tok = Tokenizer.from_file(path)
        with open(os.path.join(tok_root, name, "reference.json"), "w") as f:
            json.dump({"tokenizer": name, "made_with": {"tokenizers": tokenizers.__version__},
                       "cases": references(tok, texts_extra)}, f, indent=1, ensure_ascii=False)
        print(f"{name}: {len(texts_extra)} cases")
    render_chats(root, os.path.join(tok_root, "llama2", "tokenizer.json"))


if __name__ == "__main__":
    main()
