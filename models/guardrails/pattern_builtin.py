"""The pattern rules every policy starts with: content that is dangerous whatever the agent.

A call can be usual in every way the chains see — a known action, a known shape, in the usual
order — and still carry what no agent should send: a request to a cloud metadata endpoint (the
usual first step of credential theft through a fetch tool, in any spelling of its address),
SQL that drops a table, a schema or a column or deletes every row, a shell command that deletes
from the root or shreds files, code downloaded and run (piped into a shell, substituted into a
command line, saved then run, exec'd by an interpreter), text that tells the model reading it
to ignore all its instructions (a prompt injection). These
rules read every value (``**``), case-insensitively, on RE2 like any author's rule, and take the
pattern guardrail's action (``flag`` by default). A policy switches one off with
``disabled_rules`` (per service too) or all of them with ``builtin_rules = false``. Their ids
start with ``builtin-``; a policy's own rule may not take one of these ids while they are
on. They come after the policy's own rules (which get an event's scan budget first).

A rule listed in :data:`BUILTIN_CHECKS` has a regex that only shortlists: each match is
confirmed by its check, which reads a few hundred bytes around it (see
:class:`models.guardrails.regex_safety.Regex`) — the metadata rule decodes the address there
(:mod:`models.addresses`) instead of listing its spellings.

Each was checked against the normal runs of our tuning seeds and of the two outside generators
(≈ 62,000 runs): none matched (docs/guardrails.md, "Built-in rules"); the prompt-injection rule
also against our reported seeds and a third outside generator (≈ 550,000 events in all).

>>> [r["id"] for r in BUILTIN_RULES][:2]
['builtin-cloud-metadata', 'builtin-sql-drop']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from os.path import basename

import re2

from models.addresses import IPAddress, is_link_local, is_metadata, parse_host, parse_ipv4

__all__ = ["BUILTIN_CHECKS", "BUILTIN_PREFIX", "BUILTIN_RULES"]

#: Ids of the built-in rules start so; authors' rules may not.
BUILTIN_PREFIX = "builtin-"

# --- pieces of the regexes (RE2 syntax; every rule runs case-insensitively) -------------------

#: Spaces or SQL comments between keywords.
_S = r"(?:\s|/\*.*?\*/)+"
#: A (qualified, quoted) SQL table name.
_T = r"""[\w$."`\[\]]+"""
_SH = r"(?:ba|z|da|k)?sh"
_INTERP = r"(?:python[\d.]*|perl|ruby|node|php)"

BUILTIN_RULES: tuple[dict[str, object], ...] = (
    {
        "id": "builtin-cloud-metadata",
        "description": "A cloud instance-metadata or credentials endpoint (AWS, ECS, EKS, GCP, "
                       "Azure, Alibaba) in any spelling of its address, or a URL to a "
                       "link-local host: where stolen instance credentials come from",
        # Shortlists only: _metadata decodes the address around each match and decides.
        "regex": r"metadata\.google\.internal|instance-data"
                 r"|//metadata\.?(?::\d+)?/computemetadata|//(?:[^\s/?#@\[\]]*@)?[\d\[]"
                 r"|(?:^|[^\w.])(?:169\.|100\.(?:100|0+144|0x|[1-9]\d{3})|285\d{7}|0x0*a9"
                 r"|0+251\.\d|0+25177|0x0*64\.\d|0+144\.\d)[\w.]*|:a9fe:|:6464:|fd00:ec2:|(?:^|[^\w\])])\[[0-9a-f.]*:",
    },
    {
        "id": "builtin-sql-drop",
        "description": "SQL that drops or empties a table, schema or database, deletes every "
                       "row of a table (no WHERE) or drops a column",
        "regex": rf"\b(?:drop{_S}(?:table|schema|database)|truncate{_S}table)\b"
                 rf"|\b(?-i:DELETE){_S}(?-i:FROM){_S}{_T}\s*(?:;|$|--|\)|\"|'|`)"
                 rf"|\bdelete{_S}from{_S}{_T}\s*;"
                 rf"|\balter{_S}table\s[^;]*?\bdrop{_S}(?:column\b|[\w\"`\[\]]+\s*(?:;|,|$))",
    },
    {
        "id": "builtin-shell-wipe",
        "description": "A shell command that deletes recursively from the root, the home "
                       "directory or everything (rm -r, find -delete), overwrites files for "
                       "good (shred), formats a disk or writes over a device",
        "regex": r"\brm\s+(?:-\w+\s+)*-\w*r\w*\s+(?:-\w+\s+|--[\w-]+\s+)*(?:/|~/?|\$home/?|/\*|\*)"
                 r"(?:\s|;|&|\||$)|\bmkfs(?:\.\w+)?\s|\bdd\s[^|;]*\bof=/dev/(?:sd|nvme|xvd|hd)"
                 r"|\bfind\s+(?:-[hlp]\s+)*(?:/\*?|~/?|\$\{?home\}?/?|\*)\s+(?:-(?:xdev|mount|depth"
                 r"|[xm]?type\s+\w|m(?:ax|in)depth\s+\d+)\s+)*-(?:delete|exec\s+rm)\b"
                 r"|\bshred\s+(?:-{1,2}[a-z]|/|~)",
    },
    {
        "id": "builtin-pipe-to-shell",
        "description": "A download piped straight into a shell, or into an interpreter that "
                       "reads its program from the pipe (python3 -, perl)",
        "regex": r"\b(?:curl|wget)\b[^|;\n]*\|\s*(?:sudo\s+)?(?:(?:ba|z|da)?sh\b"
                 rf"|{_INTERP}(?:\s+-)?\s*(?:$|[;&|)\"'`]))",
    },
    {
        "id": "builtin-remote-exec",
        "description": "Code fetched over the network and run: a download substituted into a "
                       "shell command line (sh -c \"$(curl …)\", bash <(curl …)), saved then "
                       "run (curl -o f …; sh f), evaluated by an interpreter "
                       "(exec(urlopen(…)), eval(requests.get(…))) or by PowerShell "
                       "(iex (iwr …), irm … | iex)",
        # Shortlists only: _remote_exec reads the command around each match and decides.
        "regex": r"(?:\$\(|`|<\()\s*(?:sudo\s+)?(?:curl|wget)\b|\b(?:exec|eval)\s*\("
                 r"|\b(?:iex|invoke-expression)\b"
                 r"|\b(?:curl|wget)\s[^\n;|]*(?:;|&&|\n)\s*(?:[^\n;|]*(?:;|&&|\n)\s*){0,2}"
                 rf"(?:sudo\s+)?(?:(?:{_SH}|source|{_INTERP})\s|\.\s|\./|/tmp/|/var/tmp/|/dev/shm/)",
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


# --- confirming what the regexes shortlist -------------------------------------------------------
#
# Each check gets the scanned value (UTF-8 bytes) and one match's span, and reads at most a few
# hundred bytes around it (hosts, tokens and command lines longer than that are not read).

_READ = 300
#: Bytes that end a URL host (IPv4 or name; a bracketed IPv6 host ends at its ``]``).
_HOST_END = frozenset(b"/?#:\\ \t\r\n\"'<>@,;)]}|`")
_V6_CHARS = frozenset(b"0123456789abcdefABCDEF:.")
_ALNUM = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _text(data: bytes) -> str:
    return data.decode("latin-1").lower()


def _address(token: str) -> IPAddress | None:
    """The address a host or a bare token names, also as a wildcard-DNS name that carries it
    (``169.254.169.254.nip.io``)."""
    ip = parse_host(token)
    if ip is not None or ":" in token:
        return ip
    parts = token.rstrip(".").split(".")
    if len(parts) > 4 and parse_ipv4(parts[4]) is None:
        return parse_ipv4(".".join(parts[:4]))
    return None


def _host_at(data: bytes, i: int) -> str:
    """The URL host starting at ``data[i]``."""
    if data[i:i + 1] == b"[":
        j = data.find(b"]", i, i + _READ)
        return _text(data[i:j + 1]) if j > 0 else ""
    j = i
    while j < len(data) and j - i < _READ and data[j] not in _HOST_END:
        j += 1
    return _text(data[i:j])


def _in_url(data: bytes, start: int) -> bool:
    """Is ``data[start]`` where a URL's host begins (after ``//`` and any ``user@``)?"""
    before = data[max(0, start - _READ):start]
    k = before.rfind(b"//")
    if k < 0:
        return False
    userinfo = before[k + 2:]
    return (not userinfo or userinfo.endswith(b"@")) and not any(
        c in b"/?#[] \t\r\n" for c in userinfo)


def _ends_host(data: bytes, end: int) -> bool:
    if end < len(data) and data[end:end + 1] == b".":
        end += 1
    return end >= len(data) or data[end] in _HOST_END


def _v6_token(data: bytes, start: int, end: int) -> str:
    lo, hi = start, end
    while lo > 0 and start - lo < 64 and data[lo - 1] in _V6_CHARS:
        lo -= 1
    while hi < len(data) and hi - end < 64 and data[hi] in _V6_CHARS:
        hi += 1
    return _text(data[lo:hi]).strip("[")


def _metadata(data: bytes, start: int, end: int) -> bool:
    """A metadata host name; a URL host that decodes to a link-local or metadata address; a
    bare address (no URL around it) that decodes to a metadata endpoint itself (a bare
    ``169.254.1.1`` is mostly a network note, not a request)."""
    m = _text(data[start:end])
    if "metadata" in m:  # metadata.google.internal, //metadata/computeMetadata
        return True
    if m == "instance-data":
        return (_text(data[end:end + 13]) == ".ec2.internal"
                or (_in_url(data, start) and _ends_host(data, end)))
    if m.startswith("//"):
        return is_link_local(_address(_host_at(data, end - 1)))
    if ":" in m or m.endswith("["):
        inner = start + (0 if data[start] in _V6_CHARS else 1)
        return is_metadata(_address(_v6_token(data, inner, end)))
    token = m if data[start] in _ALNUM else m[1:]
    return is_metadata(_address(token))


_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "fish"})
_RUNNERS = _SHELLS | {"source", ".", "perl", "ruby", "node", "php"}
_FETCHED = re2.compile(rb"\burlopen\s*\(|\b(?:requests|httpx)\.(?:get|post)\s*\(|\bfetch\s*\("
                       rb"|\bnet::http\b|\buri\.open\b|\bdownloadstring\b"
                       rb"|\bfile_get_contents\s*\(\s*[\"']https?:")
_WEB_PS = re2.compile(rb"\b(?:iwr|irm|invoke-webrequest|invoke-restmethod|downloadstring"
                      rb"|net\.webclient|start-bitstransfer)\b")
_WEB_PS_PIPE = re2.compile(rb"\b(?:iwr|irm|invoke-webrequest|invoke-restmethod|curl|wget"
                           rb"|downloadstring)\b[^|]*\|\s*$")
_SEPARATORS = re2.compile(rb"&&|\|\||;|\n")


def _runner(word: str) -> bool:
    name = basename(word)
    return name in _RUNNERS or name.startswith("python")


def _line_before(data: bytes, start: int) -> bytes:
    before = data[max(0, start - _READ):start]
    return before[before.rfind(b"\n") + 1:]


def _words(text: bytes) -> list[str]:
    return [w for w in (t.strip("\"'") for t in _text(text).split()) if w]


def _substituted(data: bytes, start: int, m: str) -> bool:
    """``sh -c "$(curl …)"``, ``eval "$(curl …)"`` (also in backquotes), ``bash <(curl …)``:
    what the command line before the substitution runs it with."""
    words = _words(_line_before(data, start))
    flags: list[str] = []
    while words and words[-1].startswith("-"):
        flags.append(words.pop())
    if not words:
        return False
    last = words[-1]
    if m.startswith("<("):
        return _runner(last)
    if not flags:
        return last == "eval"
    return basename(last) in _SHELLS and any(f[1:].endswith("c") and f[:2] != "--"
                                             for f in flags)


def _names(command: str) -> set[str]:
    """What a curl/wget command saves: its -o/-O/--output(-document)/> file, and the last
    part of each URL's path (wget's default, curl -O)."""
    words = command.replace(">", " > ").split()
    names: set[str] = set()
    for i, w in enumerate(words):
        w = w.strip("\"'")
        if "://" in w:
            names.add(basename(w.split("?", 1)[0].split("#", 1)[0]))
        elif w in ("-o", "-O", "--output", "--output-document", ">") and i + 1 < len(words):
            names.add(basename(words[i + 1].strip("\"'")))
        elif w.startswith(("--output=", "--output-document=")):
            names.add(basename(w.split("=", 1)[1]))
    names.discard("")
    names.discard("-")
    return names


def _target(command: str) -> str | None:
    """The file a command runs: ``sh f``, ``bash -x f``, ``python3 f``, ``. f``, ``./f``."""
    words = [w.strip("\"'") for w in command.split()]
    while words and (words[0] == "sudo" or "=" in words[0]):
        words.pop(0)
    if not words:
        return None
    if words[0].startswith(("./", "/", "~/")) and not _runner(words[0]):
        return basename(words[0])
    if not _runner(words[0]):
        return None
    for w in words[1:]:
        if w in ("-c", "-e", "-m"):
            return None  # runs code or a module given inline, not a file
        if not w.startswith("-"):
            return basename(w)
    return None


def _saved_then_run(data: bytes, start: int, end: int) -> bool:
    """``curl -o f URL; sh f``, ``wget URL/i.sh && bash i.sh``, ``curl -O … && chmod +x i &&
    ./i``: a command after the download runs the file it saved."""
    text = _text(data[start:end + _READ])
    commands = _SEPARATORS.split(text.encode("latin-1"))
    names = _names(commands[0].decode("latin-1"))
    return any(_target(c.decode("latin-1")) in names for c in commands[1:4])


def _remote_exec(data: bytes, start: int, end: int) -> bool:
    m = _text(data[start:end])
    if m[:2] in ("$(", "<(") or m[:1] == "`":
        return _substituted(data, start, m)
    if m.startswith(("exec", "eval")):
        after = data[end:end + _READ].lower()
        stop = min((i for i in (after.find(b"\n"), after.find(b";")) if i >= 0),
                   default=len(after))
        return _FETCHED.search(after[:stop]) is not None
    if m.startswith(("iex", "invoke-expression")):
        after = data[end:end + _READ].lower().lstrip(b" \t")
        if after[:1] in (b"(", b'"', b"'", b"&", b"$"):
            line = after.split(b"\n", 1)[0]
            if _WEB_PS.search(line[:min((i for i in (line.find(b";"), line.find(b"|"))
                                         if i >= 0), default=len(line))]) is not None:
                return True
        return _WEB_PS_PIPE.search(_line_before(data, start).lower()) is not None
    return _saved_then_run(data, start, end)


#: Rule id -> the check that confirms each match of its regex (rules without one stand on
#: their regex alone).
BUILTIN_CHECKS: Mapping[str, Callable[[bytes, int, int], bool]] = {
    "builtin-cloud-metadata": _metadata,
    "builtin-remote-exec": _remote_exec,
}
