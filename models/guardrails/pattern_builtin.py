"""The pattern rules every policy starts with: content that is dangerous whatever the agent.

A call can be usual in every way the chains see — a known action, a known shape, in the usual
order — and still carry what no agent should send: a request to a cloud metadata endpoint (the
usual first step of credential theft through a fetch tool), SQL that drops a table or a
schema, a shell command that deletes from the root or pipes a download into a shell, text that
tells the model reading it to ignore all its instructions (a prompt injection). These
rules read every value (``**``), case-insensitively, on RE2 like any author's rule, and take the
pattern guardrail's action (``flag`` by default). A policy switches one off with
``disabled_rules`` (per service too) or all of them with ``builtin_rules = false``. Their ids
start with ``builtin-``; a policy's own rule may not take one of these ids while they are
on. They come after the policy's own rules (which get an event's scan budget first).

Each was checked against the normal runs of our tuning seeds and of the two outside generators
(≈ 62,000 runs): none matched (docs/guardrails.md, "Built-in rules"); the prompt-injection rule
also against our reported seeds and a third outside generator (≈ 550,000 events in all).

>>> [r["id"] for r in BUILTIN_RULES][:2]
['builtin-cloud-metadata', 'builtin-sql-drop']
"""

from __future__ import annotations

__all__ = ["BUILTIN_PREFIX", "BUILTIN_RULES"]

#: Ids of the built-in rules start so; authors' rules may not.
BUILTIN_PREFIX = "builtin-"

BUILTIN_RULES: tuple[dict[str, object], ...] = (
    {
        "id": "builtin-cloud-metadata",
        "description": "A cloud instance-metadata endpoint (AWS, GCP, Azure, Alibaba), also as "
                       "a decimal or hex IP: where stolen instance credentials come from",
        "regex": r"169\.254\.169\.254|\bmetadata\.google\.internal\b|100\.100\.100\.200"
                 r"|fd00:ec2::254|\b2852039166\b|\b0xa9fea9fe\b",
    },
    {
        "id": "builtin-sql-drop",
        "description": "SQL that drops or empties a table, schema or database",
        "regex": r"\b(?:drop(?:\s|/\*.*?\*/)+(?:table|schema|database)|truncate(?:\s|/\*.*?\*/)+"
                 r"table)\b",
    },
    {
        "id": "builtin-shell-wipe",
        "description": "A shell command that deletes recursively from the root, the home "
                       "directory or everything, formats a disk or writes over a device",
        "regex": r"\brm\s+(?:-\w+\s+)*-\w*r\w*\s+(?:-\w+\s+|--[\w-]+\s+)*(?:/|~/?|\$home/?|/\*|\*)"
                 r"(?:\s|;|&|\||$)|\bmkfs(?:\.\w+)?\s|\bdd\s[^|;]*\bof=/dev/(?:sd|nvme|xvd|hd)",
    },
    {
        "id": "builtin-pipe-to-shell",
        "description": "A download piped straight into a shell",
        "regex": r"\b(?:curl|wget)\b[^|;\n]*\|\s*(?:sudo\s+)?(?:ba|z|da)?sh\b",
    },
    {
        "id": "builtin-prompt-injection",
        "description": "Text telling a model to drop all the instructions it was given, a "
                       "chat template's system-role token, or an HTML comment posing as the "
                       "system and addressing the model: the common forms of a prompt "
                       "injection carried in tool arguments and results",
        "regex": r"\b(?:ignore|disregard|forget)\s+(?:(?:and|the|your|my|these|those|of)\s+)*"
                 r"(?:all|any|every)\b(?:\s+(?:and|all|the|your|my|these|those|of))*\s+"
                 r"(?:previous|prior|above|earlier|preceding|former|system|original)\s+"
                 r"(?:instructions?|prompts?|directives?|guidelines)\b"
                 r"|<\|im_start\|>\s*system|<\|system\|>|<<sys>>"
                 r"|<!--\s*(?:system|assistant|ai)\s*:[^>]*?\b(?:you\s+(?:are|must|will|should|"
                 r"may|can)\b|authori[sz]ed\s+you\b|ignore\s+(?:all|any|the|your|previous|prior)"
                 r"\b)",
    },
)
