#!/usr/bin/env python3
"""Independent judge of structured-output cases: reads a JSONL file of cases and says which ones
break their constraint, by Python's re (fullmatch for guided_regex) and the jsonschema package
(with strict checks of the date, date-time, time, uuid and email formats).

Each line: {"id", "kind": "regex"|"schema"|"choice"|"json_object", "constraint", "text"} and
optionally "expect": true/false (the engine's verdict; checked both ways) -- without "expect" the
text must satisfy its constraint. Prints a JSON summary; exit status 1 when any case disagrees,
2 when jsonschema is missing."""
import datetime
import json
import re
import sys
import uuid

try:
    import jsonschema
except ImportError:
    print("structured_check: the jsonschema package is missing (apt-get install python3-jsonschema)")
    sys.exit(2)

checker = jsonschema.FormatChecker()


def strict_format(fmt):
    def wrap(fn):
        def check(instance):
            if not isinstance(instance, str):
                return True
            return fn(instance)
        checker.checks(fmt, raises=(ValueError, TypeError))(check)
        return fn
    return wrap


@strict_format("date")
def _date(s):
    return re.fullmatch(r"\d{4}-\d{2}-\d{2}", s) is not None and datetime.date.fromisoformat(s) is not None


TIME = r"\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})"


def _time_ok(s):
    m = re.fullmatch(r"(\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(Z|[+-](\d{2}):(\d{2}))", s)
    if not m:
        return False
    h, mi, se = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if h > 23 or mi > 59 or se > 59:
        return False
    if m.group(6) is not None and (int(m.group(6)) > 23 or int(m.group(7)) > 59):
        return False
    return True


@strict_format("time")
def _time(s):
    return _time_ok(s)


@strict_format("date-time")
def _date_time(s):
    if "T" not in s:
        return False
    d, t = s.split("T", 1)
    return _date(d) and _time_ok(t) and datetime.datetime.fromisoformat(s.replace("Z", "+00:00")) is not None


@strict_format("uuid")
def _uuid(s):
    return re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", s) is not None \
        and str(uuid.UUID(s)) == s.lower()


@strict_format("email")
def _email(s):
    return re.fullmatch(r"[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", s) is not None


def satisfies(case):
    kind, c, text = case["kind"], case["constraint"], case["text"]
    if kind == "regex":
        return re.fullmatch(c, text) is not None
    if kind == "choice":
        return text in c
    try:
        value = json.loads(text)
    except ValueError:
        return False
    if kind == "json_object":
        return isinstance(value, dict)
    validator = jsonschema.validators.validator_for(c)(c, format_checker=checker)
    return validator.is_valid(value)


def main():
    cases = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
    bad = []
    for case in cases:
        truth = satisfies(case)
        want = case.get("expect", True)
        if truth != want:
            bad.append({"id": case.get("id"), "text": case["text"], "engine": want, "python": truth})
    print(json.dumps({"cases": len(cases), "disagree": len(bad), "examples": bad[:10]}, ensure_ascii=False))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
