#!/usr/bin/env python3
"""Reference renderings for strata's Jinja chat-template interpreter, made with jinja2 itself.

Renders, the way transformers' apply_chat_template does (ImmutableSandboxedEnvironment with
trim_blocks, lstrip_blocks and loopcontrols; transformers' raise_exception, strftime_now and tojson;
the special tokens of tokenizer_config.json as variables; tools=None and documents=None when
absent):

1. every template of chat_templates/models.json over every conversation of
   chat_templates/conversations_jinja.json, with add_generation_prompt true and false (and
   enable_thinking unset/true/false for templates that read it);
2. every snippet of chat_templates/snippets.json (small templates exercising one feature each).

Messages are prepared as strata prepares them, which is how vLLM prepares them for a chat
template: tool call arguments given as a JSON string are parsed; content given as parts is joined
with "\\n", and null or missing content becomes "", unless the template loops over message content
itself (then parts stay a list and null content is an empty list). strftime_now() sees the fixed time CLOCK.

Writes chat_templates/references.json; the C++ tests compare their renderings with it byte for
byte. Needs only jinja2 (Debian: python3-jinja2):

    python3 tests/data/make_chat_template_refs.py tests/data
"""

import copy
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

CLOCK = datetime.datetime(2025, 3, 14, 9, 26, 53)


def make_env():
    # As transformers' _compile_jinja_template builds it (its AssistantTracker extension only adds
    # the {% generation %} tag, which renders its body unchanged).
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return CLOCK.strftime(format)

    class Generation(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def loops_over_content(env, source):
    """True when a {% for %} iterates over x.content or x['content'] (through filters too)."""
    def reads_content(node):
        while isinstance(node, nodes.Filter):
            node = node.node
        if isinstance(node, nodes.Getattr):
            return node.attr == "content"
        if isinstance(node, nodes.Getitem):
            return isinstance(node.arg, nodes.Const) and node.arg.value == "content"
        return False
    return any(reads_content(f.iter) for f in env.parse(source).find_all(nodes.For))


def prepare_messages(messages, content_as_parts):
    out = copy.deepcopy(messages)
    for m in out:
        if m.get("content") is None:
            m["content"] = [] if content_as_parts else ""
        elif isinstance(m["content"], list) and not content_as_parts:
            m["content"] = "\n".join(p["text"] for p in m["content"])
        for call in m.get("tool_calls") or []:
            fn = call.get("function")
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                try:
                    fn["arguments"] = json.loads(fn["arguments"])
                except ValueError:
                    pass
    return out


def render(env, source, context):
    try:
        return {"rendered": env.from_string(source).render(**context)}
    except jinja2.exceptions.TemplateSyntaxError as e:
        return {"error": str(e.message), "kind": "syntax", "line": e.lineno}
    except jinja2.exceptions.TemplateError as e:
        return {"error": str(e.message if hasattr(e, "message") and e.message else e),
                "kind": type(e).__name__}
    except Exception as e:  # TypeError and friends raised by Python operations
        return {"error": str(e), "kind": type(e).__name__}


def main(root):
    base = os.path.join(root, "chat_templates")
    load = lambda name: json.load(open(os.path.join(base, name), encoding="utf-8"))
    models, conversations, snippets = load("models.json"), load("conversations_jinja.json"), load("snippets.json")
    legacy = load("templates.json")
    env = make_env()
    out = {"made_with": {"jinja2": jinja2.__version__}, "clock": CLOCK.isoformat(), "renderings": [],
           "snippets": []}
    for name, m in models.items():
        if "file" in m:
            source = open(os.path.join(base, m["file"]), encoding="utf-8").read()
        else:
            source = legacy[m["templates_json"]]["chat_template"]
        parts = loops_over_content(env, source)
        kwargs_sets = [{}]
        if "enable_thinking" in source:
            kwargs_sets += [{"enable_thinking": True}, {"enable_thinking": False}]
        for case_name, case in conversations.items():
            for agp in (True, False):
                for kwargs in kwargs_sets:
                    context = dict(m.get("special_tokens", {}))
                    context.update(kwargs)
                    context.update(messages=prepare_messages(case["messages"], parts), tools=case.get("tools"),
                                   documents=None, add_generation_prompt=agp)
                    r = {"template": name, "conversation": case_name, "add_generation_prompt": agp,
                         "kwargs": kwargs}
                    r.update(render(env, source, context))
                    out["renderings"].append(r)
    for s in snippets:
        r = {"name": s["name"]}
        r.update(render(env, s["template"], s.get("context", {})))
        out["snippets"].append(r)
    with open(os.path.join(base, "references.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    errors = sum("error" in r for r in out["renderings"])
    print(f"{len(out['renderings'])} renderings ({errors} errors), {len(out['snippets'])} snippets")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
