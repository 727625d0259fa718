"""Fault rules: which requests a fault hits, and what the fault does.

A rule (JSON object):

    method        "PUT", ["PUT", "MKCOL"] or "*" (default)
    path          regular expression searched in the request path, raw or percent-decoded ("" = any)
    action        status | reset | stall | truncate | slow | reset_after_headers | lie | delay | hold
    status        for "status": a code or a list to draw from (default 503)
    retry_after   for "status": seconds sent as Retry-After (default: 1 for 423/429/503, else none)
    count         how many requests it hits before it is spent; -1 = unlimited (default 1)
    after         let the first N matching requests through untouched (default 0)
    probability   chance that a matching request is hit (default 1); a request not hit does not
                  use up the count and goes on to the next rule
    seed          makes the draws (and a status list's choice) reproducible
    seconds       stall / delay / hold length, and how long "slow" lasts (capped at MAX_SECONDS)
    forward       for "reset" and "stall": the request reaches the server first, its answer is lost
    after_bytes   for truncate / reset_after_headers: body bytes sent before the cut
                  (truncate's default: half the body)
    rate          for "slow": bytes per second (default 4096)
    forward_bytes for "lie": bytes of the PUT body that reach the server; null (default) = the
                  request never reaches it. Either way the client is told 201/204.
    note          free text, copied into the log

Rules are tried in order; the first that hits decides. Every decision is made under one lock,
so concurrent connections draw from a rule's generator in a well-defined (arrival) order.
"""

import random
import re
import threading
import urllib.parse

ACTIONS = ("status", "reset", "stall", "truncate", "slow", "reset_after_headers", "lie", "delay", "hold")
# Every wait the proxy makes on purpose ends after this, so no run can hang on a fault.
MAX_SECONDS = 120.0


class Rule:
    def __init__(self, spec, rule_id):
        if not isinstance(spec, dict):
            raise ValueError("a rule is a JSON object")
        unknown = set(spec) - {"method", "path", "action", "status", "retry_after", "count", "after",
                               "probability", "seed", "seconds", "forward", "after_bytes", "rate",
                               "forward_bytes", "note"}
        if unknown:
            raise ValueError("unknown rule keys: %s" % ", ".join(sorted(unknown)))
        self.id = rule_id
        m = spec.get("method", "*")
        self.methods = None if m in ("*", None) else {x.upper() for x in ([m] if isinstance(m, str) else m)}
        self.path_text = spec.get("path", "") or ""
        self.path = re.compile(self.path_text)
        self.action = spec.get("action", "status")
        if self.action not in ACTIONS:
            raise ValueError("unknown action %r (one of %s)" % (self.action, ", ".join(ACTIONS)))
        s = spec.get("status", 503)
        self.statuses = [int(x) for x in (s if isinstance(s, list) else [s])]
        if not self.statuses or any(not 100 <= x <= 599 for x in self.statuses):
            raise ValueError("status must be a code or a non-empty list of codes")
        self.retry_after = spec.get("retry_after")
        self.count = int(spec.get("count", 1))
        if self.count < -1 or self.count == 0:
            raise ValueError("count must be -1 (unlimited) or positive")
        self.left = self.count  # uses left; 0 = spent (kept, so its counters stay readable)
        self.after = int(spec.get("after", 0))
        self.probability = float(spec.get("probability", 1))
        if not 0 < self.probability <= 1:
            raise ValueError("probability must be in (0, 1]")
        self.seed = spec.get("seed")
        self.rng = random.Random(self.seed)
        self.seconds = min(float(spec.get("seconds", 40 if self.action == "stall" else 1)), MAX_SECONDS)
        self.forward = bool(spec.get("forward", False))
        ab = spec.get("after_bytes")
        self.after_bytes = None if ab is None else max(0, int(ab))
        self.rate = max(1, int(spec.get("rate", 4096)))
        fb = spec.get("forward_bytes")
        self.forward_bytes = None if fb is None else max(0, int(fb))
        self.note = spec.get("note")
        self.seen = 0      # matching requests so far
        self.hits = 0      # requests the fault was applied to
        self.passed = 0    # matching requests let through (after, probability)

    def matches(self, method, raw_path):
        if self.methods is not None and method not in self.methods:
            return False
        if not self.path_text:
            return True
        return bool(self.path.search(raw_path) or self.path.search(urllib.parse.unquote(raw_path)))

    def describe(self):
        return {"id": self.id, "method": "*" if self.methods is None else sorted(self.methods),
                "path": self.path_text, "action": self.action, "status": self.statuses,
                "retry_after": self.retry_after, "count": self.count, "left": self.left, "after": self.after,
                "probability": self.probability, "seed": self.seed, "seconds": self.seconds,
                "forward": self.forward, "after_bytes": self.after_bytes, "rate": self.rate,
                "forward_bytes": self.forward_bytes, "note": self.note,
                "seen": self.seen, "hits": self.hits, "passed": self.passed}


class Hit:
    """One decision: the rule that fired and the status it drew (for "status")."""

    def __init__(self, rule, status):
        self.rule = rule
        self.status = status


class RuleSet:
    def __init__(self):
        self.lock = threading.Lock()  # guards rules, next_id and every rule's counters and rng
        self.rules = []
        self.next_id = 1

    def _make(self, specs):
        if isinstance(specs, dict) and "rules" in specs:
            specs = specs["rules"]
        if isinstance(specs, dict):
            specs = [specs]
        if not isinstance(specs, list):
            raise ValueError("expected a rule, a list of rules or {\"rules\": [...]}")
        made = []
        for spec in specs:
            made.append(Rule(spec, self.next_id + len(made)))
        return made

    def replace(self, specs):
        with self.lock:
            made = self._make(specs)  # validated before anything changes
            self.next_id += len(made)
            self.rules = made
            return [r.describe() for r in made]

    def add(self, specs):
        with self.lock:
            made = self._make(specs)
            self.next_id += len(made)
            self.rules.extend(made)
            return [r.describe() for r in made]

    def describe(self):
        with self.lock:
            return [r.describe() for r in self.rules]

    def pick(self, method, raw_path):
        """The hit for this request, or None to pass it through."""
        with self.lock:
            for rule in self.rules:
                if rule.left == 0 or not rule.matches(method, raw_path):
                    continue
                rule.seen += 1
                if rule.seen <= rule.after:
                    rule.passed += 1
                    continue
                if rule.probability < 1 and rule.rng.random() >= rule.probability:
                    rule.passed += 1
                    continue
                rule.hits += 1
                status = rule.statuses[0] if len(rule.statuses) == 1 else rule.rng.choice(rule.statuses)
                if rule.left > 0:
                    rule.left -= 1
                return Hit(rule, status)
        return None
