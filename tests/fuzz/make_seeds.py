#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/seed-*) from the
repository's fixtures and a few hand-made inputs per format. Run from the repository root after
changing a format; the fuzzers' own finds are added beside the seeds by scripts/fuzz.sh.
Python 3 standard library only."""

import glob
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def request_lines():
    lines = {
        "plain": {"custom_id": "r1", "prompt": "Once upon a time", "max_tokens": 8},
        "batch": {"custom_id": "r2", "method": "POST", "url": "/v1/completions",
                  "body": {"model": "m", "prompt": "Hi", "max_tokens": 32, "temperature": 0.7, "top_p": 0.9,
                           "top_k": 40, "seed": 1, "stop": ["\n\n"], "logprobs": 2}},
        "chat": {"custom_id": "r3", "method": "POST", "url": "/v1/chat/completions",
                 "body": {"messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                          "max_completion_tokens": 4, "logprobs": True, "top_logprobs": 3}},
        "ids": {"custom_id": "r4", "prompt": [1, 2, 3], "ignore_eos": True, "n": 1, "best_of": 1},
        "bad-types": {"custom_id": "r5", "prompt": "x", "max_tokens": "ten", "temperature": -1},
        "no-id": {"prompt": "x"},
    }
    for name, obj in lines.items():
        put("request_line", name, json.dumps(obj, ensure_ascii=False))
    put("request_line", "broken", '{"custom_id": "x", "prompt": "unterminated')
    put("request_line", "result",
        '{"custom_id":"r1","error":null,"id":"batch_req_1","response":{"body":{"choices":[{"finish_reason":"stop",'
        '"index":0,"logprobs":null,"text":"x"}],"object":"text_completion"},"status_code":200}}')
    put("request_line", "error",
        '{"custom_id":null,"error":{"code":"invalid_json","line":3,"message":"m","scope":"job"},'
        '"id":"batch_req_3","response":null}')


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, dtype, shape, elem in tensors:
        n = elem
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + n]}
        data += bytes((i * 7) % 251 for i in range(n))
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def safetensors_files():
    put("safetensors_file", "one-f32", safetensors([("a", "F32", [2, 3], 4)]))
    put("safetensors_file", "mixed", safetensors([("w", "F16", [4, 2], 2), ("b", "BF16", [4], 2),
                                                  ("i", "I64", [2], 8), ("e", "F32", [0, 3], 4)],
                                                 {"format": "pt"}))
    put("safetensors_file", "scalar", safetensors([("s", "F32", [], 4), ("u8", "U8", [5], 1)]))
    put("safetensors_file", "empty-header", struct.pack("<Q", 2) + b"{}")
    index = {"metadata": {"total_size": 48},
             "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                            "lm_head.weight": "model-00002-of-00002.safetensors"}}
    put("safetensors_index", "two-shards", json.dumps(index))
    put("safetensors_index", "unsafe", json.dumps({"weight_map": {"a": "../x.safetensors", "b": "/abs"}}))
    put("safetensors_index", "empty", "{}")


def configs():
    paths = sorted(glob.glob(os.path.join(ROOT, "tests", "data", "fixtures", "*", "config.json")))
    paths += [os.path.join(ROOT, "models", "demo", "config.json")]
    paths += sorted(glob.glob(os.path.join(ROOT, "models", "shapes", "*.json")))[:6]
    for p in paths:
        name = os.path.basename(os.path.dirname(p)) if p.endswith("config.json") else os.path.basename(p)[:-5]
        with open(p, "rb") as f:
            put("model_config", name, f.read())


def tokenizers():
    base = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [
        {"id": 5, "content": "<s>", "special": True, "lstrip": False, "rstrip": False, "normalized": False,
         "single_word": False}],
        "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": {"a": 0, "b": 1, "ab": 2, "c": 3, "abc": 4}, "merges": ["a b", "ab c"]}}
    variants = {
        "minimal": {},
        "nfkc-metaspace": {"normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFKC"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
            {"type": "Prepend", "prepend": "\u2581"}]},
            "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True},
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
                {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}},
        "bytelevel": {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                        "use_regex": True},
                      "decoder": {"type": "ByteLevel"},
                      "post_processor": {"type": "TemplateProcessing",
                                         "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                    {"Sequence": {"id": "A", "type_id": 0}}],
                                         "special_tokens": {"<s>": {"id": "<s>", "ids": [5], "tokens": ["<s>"]}}}},
        "split": {"normalizer": {"type": "Lowercase"},
                  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                      {"type": "Split", "pattern": {"Regex": "\\p{L}+|\\s+"}, "behavior": "Isolated",
                       "invert": False}, {"type": "WhitespaceSplit"}]}},
        "roberta": {"normalizer": {"type": "NFD"}, "post_processor": {"type": "RobertaProcessing",
                                                                      "sep": ["</s>", 2], "cls": ["<s>", 0]}},
    }
    for name, change in variants.items():
        t = json.loads(json.dumps(base))
        t.update(change)
        put("tokenizer_json", name, json.dumps(t, ensure_ascii=False))
    for p in [os.path.join(ROOT, "tests", "data", "fixtures", "llama_text", "tokenizer.json"),
              os.path.join(ROOT, "tests", "data", "tokenizers", "metaspace_nfkc", "tokenizer.json")]:
        with open(p, "rb") as f:
            put("tokenizer_json", os.path.basename(os.path.dirname(p)), f.read())
    with open(os.path.join(ROOT, "tests", "data", "tokenizers", "texts.json"), encoding="utf-8") as f:
        texts = json.load(f)
    for i, text in enumerate(texts):
        put("tokenize_text", "text-%02d" % i, bytes([i % 4]) + text.encode("utf-8"))


def manifests():
    def tensor(name, file, shape, offset, nbytes, compression="none", dtype="F16"):
        return {"name": name, "file": file, "dtype": dtype, "shape": shape, "offset": offset, "bytes": nbytes,
                "compression": compression, "xxhash64": "ef46db3751d8e999"}
    m = {"format": "strata-weight-store", "format_version": 1, "alignment": 4096, "compression": "int4-g64",
         "source": "models/demo",
         "files": [{"name": "embed.bin", "bytes": 8192}, {"name": "layer.000.bin", "bytes": 12288}],
         "tensors": [tensor("embed.tokens", "embed.bin", [16, 64], 0, 2048),
                     tensor("layers.0.q.weight", "layer.000.bin", [64, 64], 0, 2304, "int4-g64"),
                     tensor("layers.0.attn_norm.weight", "layer.000.bin", [64], 4096, 256, dtype="F32")]}
    put("store_manifest", "small", json.dumps(m, indent=1))
    put("store_manifest", "other-version", json.dumps({"format": "strata-weight-store", "format_version": 2}))


def chat_templates():
    # The real templates alone (rendering the target's fixed conversation), a few with a request of
    # their own after a NUL, and the built-in families' templates.
    tdir = os.path.join(ROOT, "tests", "data", "chat_templates")
    for path in sorted(glob.glob(os.path.join(tdir, "jinja", "*.jinja"))):
        with open(path, encoding="utf-8") as f:
            put("chat_template", os.path.basename(path)[:-6], f.read())
    with open(os.path.join(tdir, "templates.json"), encoding="utf-8") as f:
        for name, text in json.load(f).items():
            put("chat_template", "family-" + name, text["chat_template"])
    with open(os.path.join(tdir, "conversations_jinja.json"), encoding="utf-8") as f:
        conversations = json.load(f)
    simple = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|a|>{% endif %}"
    for name, conv in list(conversations.items())[:6]:
        put("chat_template", "request-" + name, simple + "\0" + json.dumps({"custom_id": name, "body": conv}))


def constraints():
    # Schemas, regexes and choice lists, each with a text after a NUL that the constraint takes
    # (the first byte says which kind: s, r or c).
    schemas = {
        "object": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 16},
                   "age": {"type": "integer", "minimum": 0, "maximum": 120}}, "required": ["name"],
                   "additionalProperties": False},
        "formats": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"},
                    "day": {"type": "string", "format": "date"}, "when": {"type": "string", "format": "date-time"},
                    "mail": {"type": "string", "format": "email"}}, "required": ["id"]},
        "numbers": {"type": "array", "items": {"anyOf": [{"type": "number", "exclusiveMinimum": -1.5, "maximum": 2.25},
                    {"type": "integer", "minimum": 1000}, {"type": "null"}]}, "minItems": 1, "maxItems": 3},
        "recursive": {"$defs": {"n": {"type": "object", "properties": {"v": {"enum": [1, "a", None, True]},
                      "kids": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "required": ["v"]}},
                      "$ref": "#/$defs/n"},
        "pattern": {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3,4}$"},
                    "k": {"oneOf": [{"const": "x"}, {"const": {"a": [1, 2]}}]}}, "required": ["code", "k"]},
        "unsupported": {"type": "object", "patternProperties": {"^a": {"type": "string"}}},
    }
    texts = {"object": '{"name":"Ann","age":42}', "formats": '{"id":"0f8fad5b-d9cb-469f-a165-70867728950e"}',
             "numbers": "[2.25,null,1000]", "recursive": '{"v":1,"kids":[{"v":"a"}]}',
             "pattern": '{"code":"AB-123","k":"x"}', "unsupported": "{}"}
    for name, schema in schemas.items():
        put("constraint", "schema-" + name, "s" + json.dumps(schema) + "\0" + texts[name])
    regexes = {"name": ("[A-Z][a-z]{2,8}( [A-Z][a-z]{2,8})?", "Ada Lovelace"), "phone": ("\\d{3}-\\d{4}", "555-1234"),
               "alt": ("(yes|no|maybe), because [a-z ]{1,20}\\.", "maybe, because why."),
               "utf8": ("(caf\u00e9|\u03b1\u03b2) [^\\n]{0,10}!", "caf\u00e9 ok!"), "backref": ("(a)\\1", "aa")}
    for name, (pattern, text) in regexes.items():
        put("constraint", "regex-" + name, "r" + pattern + "\0" + text)
    put("constraint", "choice", "cpositive\nnegative\nneutral\0neutral")


if __name__ == "__main__":
    request_lines()
    safetensors_files()
    configs()
    tokenizers()
    manifests()
    chat_templates()
    constraints()
