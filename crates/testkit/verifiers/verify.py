"""Runs a provider's Python verification snippet over cases read from stdin.

Usage: python3 verify.py SCHEME, with SCHEME one of trr, real-id, rheo,
standard-webhooks. Each input line is a JSON object {"body": <base64 of the
raw request body>, "headers": {name: value}, "key": <secret>}; each output
line is {"ok": bool, "error": str|null, "python_agrees": bool|null}. A snippet
that raises counts as a rejection, as it would in a web handler.
"""
import base64
import json
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def snippet(name):
    return runpy.run_path(os.path.join(HERE, "snippets", name))


def lower(headers):
    return {k.lower(): v for k, v in headers.items()}


def main():
    scheme = sys.argv[1]
    if scheme == "trr":
        fn = snippet("trr.py")["verify_webhook_signature"]

        def check(raw, headers, key):
            # The snippet calls payload.encode('utf-8'): the body as text.
            return fn(raw.decode("utf-8"), lower(headers).get("x-trr-signature"), key)
    elif scheme == "real-id":
        fn = snippet("real_id.py")["verify_webhook"]

        def check(raw, headers, key):
            os.environ["REAL_ID_SIGNING_KEY"] = key
            # Flask's request.get_json(): the parsed body.
            return fn(json.loads(raw), lower(headers))
    elif scheme == "rheo":
        fn = snippet("rheo.py")["verify_webhook_signature"]

        def check(raw, headers, key):
            return fn(raw, lower(headers).get("x-rheo-signature"), key)
    elif scheme == "standard-webhooks":
        from standardwebhooks.webhooks import Webhook

        def check(raw, headers, key):
            Webhook(key).verify(raw, headers, json_parse=False)
            return True
    else:
        sys.exit(f"unknown scheme {scheme}")

    for line in sys.stdin:
        case = json.loads(line)
        raw = base64.b64decode(case["body"])
        agrees = None
        try:
            # Whether Python's json.dumps rebuilds the exact body Node's
            # JSON.stringify does (it cannot for non-ASCII, for instance).
            agrees = json.dumps(json.loads(raw), separators=(",", ":")).encode("utf-8") == raw
        except Exception:
            agrees = False
        try:
            ok = bool(check(raw, case["headers"], case["key"]))
            error = None
        except Exception as e:  # the snippet raised: a rejection
            ok, error = False, f"{type(e).__name__}: {e}"
        print(json.dumps({"ok": ok, "error": error, "python_agrees": agrees}), flush=True)


main()
