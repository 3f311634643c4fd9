"""The names pass: stage, loader and callback names that are safe as file names (SF519, SF520).

Requires: the final plan for this rank (defaults added, so the file writers a logdir adds are in).
Guarantees: adds diagnostics only. SF519 for a name that is not a portable file name: a path
separator, ``.`` or ``..``, a NUL or control character, a character Windows refuses, more than
`MAX_BYTES` bytes in UTF-8, leading or trailing spaces or dots — and for a file a built-in
writer would name after it that is longer than a file system allows (`NAME_MAX`). SF520 for two
stages, or two loaders of one stage, whose names are equal on a case-insensitive file system
(macOS, Windows) once case and Unicode normalisation are ignored. Windows device names (``aux``,
``con``) are not refused: ``aux`` is a common stage name.

Why: names become paths under the logdir — ``logs/{stage}.csv``,
``checkpoints/{prefix}{stage}.{last,best,epochN,exception}.pth``,
``predictions/{stage}_{loader}.{pt,csv}`` — and a stage named ``../../x`` would write outside
it, ``a/b`` would fail at the first epoch end, a 300-byte name only when its stage starts. The
resume checkpoints (``checkpoints/resume/epoch-NNNNNN.pth``) carry no name. Callback names are
held to the same rule, so that a callback may name its files after itself.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.plan import CallbackPlan, ExecutionPlan, StagePlan

#: The longest name, in UTF-8 bytes: room for a prefix and a suffix such as ``.exception.pth``
#: within the 255 bytes most file systems allow.
MAX_BYTES = 200
#: The longest file name most file systems allow (ext4, APFS, NTFS), in bytes.
NAME_MAX = 255
#: Characters Windows refuses in a file name (besides the separators and control characters).
WINDOWS_FORBIDDEN = '<>:"|?*'

#: What each kind of name becomes on disk, for messages.
_BECOMES = {
    "stage": "stage names become files and folders under the logdir (logs/{stage}.csv, "
             "checkpoints/{stage}.best.pth)",
    "loader": "loader names become prediction files (predictions/{stage}_{loader}.pt)",
    "callback": "callback names are held to the rule of stage and loader names, so that a "
                "callback may name its files after itself",
}


def names(plan: ExecutionPlan, diags: Diagnostics) -> ExecutionPlan:
    """Report unsafe names (SF519) and names equal on a case-insensitive file system (SF520)."""
    _collisions("stage", [s.name for s in plan.stages], diags, {})
    for stage in plan.stages:
        _check("stage", stage.name, diags, stage=stage.name)
        loaders = [loader.name for loader in stage.loaders]
        for loader in loaders:
            _check("loader", loader, diags, stage=stage.name, loader=loader)
        _collisions("loader", loaders, diags, {"stage": stage.name})
        for cb in stage.callbacks:
            if cb.origin == "declared":  # a migrated one is reported where it is declared
                _check("callback", cb.name, diags, stage=stage.name, callback=cb.name)
        if not problems(stage.name) and not any(problems(n) for n in loaders):
            _check_files(stage, diags)
    return plan


def problems(name: str) -> list[str]:
    """Why ``name`` is not a portable file name (``[]`` when it is one).

    >>> problems("../x")
    ["contains '/' (a path separator)", "has '..' parts (which lead out of the folder)"]
    >>> problems("train")
    []
    """
    found = []
    separators = sorted({c for c in name if c in "/\\"})
    if separators:
        found.append(f"contains {_quoted(separators)} (a path separator)")
    parts = re.split(r"[/\\]", name)
    if name in (".", "..") or (separators and ".." in parts):
        found.append("is '.' or '..'" if name in (".", "..")
                     else "has '..' parts (which lead out of the folder)")
    control = sorted({c for c in name if unicodedata.category(c) in ("Cc", "Cs")})
    if control:
        found.append(f"contains {_quoted(control)} (a NUL, control or unencodable character)")
    forbidden = sorted({c for c in name if c in WINDOWS_FORBIDDEN})
    if forbidden:
        found.append(f"contains {_quoted(forbidden)} (which Windows refuses in file names)")
    if not separators and name not in (".", "..") and name != name.strip(" ."):
        found.append("starts or ends with a space or a dot")
    size = _size(name)
    if size > MAX_BYTES:
        found.append(f"is {size} bytes long in UTF-8, over the {MAX_BYTES} allowed")
    return found


def safe_name(name: str, taken: Iterable[str] = ()) -> str:
    """A portable file name close to ``name``, not equal (ignoring case) to any of ``taken``.

    >>> safe_name("../../x"), safe_name("a/b"), safe_name("a:b"), safe_name("train", ["Train"])
    ('x', 'a_b', 'a_b', 'train_2')
    """
    parts = [p for p in re.split(r"[/\\]", name) if p not in ("", ".", "..")]
    text = "_".join(parts)
    text = "".join("_" if c in WINDOWS_FORBIDDEN or unicodedata.category(c) in ("Cc", "Cs")
                   else c for c in text).strip(" .")
    while _size(text) > MAX_BYTES:
        text = text[:-1].rstrip(" .")
    if not text:
        text = "unnamed"
    folded = {fold(t) for t in taken}
    candidate, n = text, 2
    while fold(candidate) in folded:
        candidate, n = f"{text}_{n}", n + 1
    return candidate


def fold(name: str) -> str:
    """``name`` as a case- and normalisation-insensitive file system compares it (APFS, NTFS)."""
    return unicodedata.normalize("NFC", name.casefold())


def _check(kind: str, name: str, diags: Diagnostics, **where: str) -> None:
    found = problems(name)
    if not found:
        return
    diags.error("SF519", f"the {kind} name {name!r} is not a safe file name: it "
                f"{_and(found)}; {_BECOMES[kind]}",
                f"rename the {kind}, e.g. {safe_name(name)!r}", **where)


def _collisions(kind: str, names: list[str], diags: Diagnostics, where: dict[str, str]) -> None:
    """SF520 for each name equal (ignoring case) to an earlier one, located at the later one."""
    first: dict[str, str] = {}
    for name in names:
        earlier = first.setdefault(fold(name), name)
        if earlier == name:
            continue
        files = (f"logs/{fold(name)}.csv and checkpoints/{fold(name)}.best.pth" if kind == "stage"
                 else f"predictions/{where['stage']}_{fold(name)}.pt")
        diags.error("SF520", f"{kind}s {earlier!r} and {name!r} differ only in case, so on a "
                    f"case-insensitive file system (macOS, Windows) their files are the same "
                    f"({files}) and one would overwrite the other",
                    f"rename one of them, e.g. {name!r} to {safe_name(name, names)!r}",
                    **where, **{kind: name})


def _check_files(stage: StagePlan, diags: Diagnostics) -> None:
    """SF519 at a built-in writer whose longest file name for this stage is too long."""
    for cb in stage.callbacks:
        for file in _files(stage, cb):
            size = _size(file)
            if size > NAME_MAX:
                diags.error("SF519", f"it would write a file named {file!r}, {size} bytes long "
                            f"in UTF-8, over the {NAME_MAX} a file system allows",
                            "shorten the stage or loader names (or the callback's prefix)",
                            stage=stage.name, callback=cb.name)
                break


def _files(stage: StagePlan, cb: CallbackPlan) -> list[str]:
    """The longest file names a built-in writer gives for ``stage`` (known by its kind)."""
    if cb.kind == "checkpoint":
        claims = [c for c in cb.claims if c.startswith("files:checkpoints/")]
        prefix = claims[0].removeprefix("files:checkpoints/") if claims else ""
        return [f"{prefix}{stage.name}.exception.pth",
                f"{prefix}{stage.name}.epoch{stage.num_epochs}.pth"]
    if cb.kind == "csv_logger":
        return [f"{stage.name}.csv"]
    if cb.kind == "prediction_writer":
        return [f"{stage.name}_{loader.name}.csv" for loader in stage.loaders]
    return []


def _size(name: str) -> int:
    return len(name.encode("utf-8", "surrogatepass"))


def _quoted(chars: list[str]) -> str:
    return ", ".join(repr(c) for c in chars)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
