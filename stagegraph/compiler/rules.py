"""The rule registry: every diagnostic code, its default level, its fix, and who may change it.

Each code is one entry. The docs page (docs/diagnostics.md, its table of levels),
``stagegraph validate --explain CODE`` and the check of ``lints=`` settings are all read from here,
so none of them can drift from what the compiler reports (a test compares the severity of every
call site with the entry's default). A ``fixed`` rule cannot be set to another level: it describes
a plan that cannot run at all (a malformed value, a cycle), or it is reported outside the compiler
(loading a file, resuming a run), where no ``lints`` setting is in force.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

Level = Literal["error", "warning", "info", "allow"]
LEVELS: tuple[str, ...] = ("error", "warning", "info", "allow")

#: What each level means, for ``--explain`` and the docs.
LEVEL_MEANINGS: dict[str, str] = {
    "error": "the plan cannot run: plan.ok is false, validate exits 1, run refuses it",
    "warning": "printed by validate and run; validate --strict counts it as an error",
    "info": "a note, printed by validate and run; never fails anything",
    "allow": "not reported at all",
}

#: The part of stagegraph that reports a code, by its hundreds (``SF3xx``: migration).
GROUPS: dict[str, str] = {
    "SF0": "loading an experiment file",
    "SF1": "the schema",
    "SF2": "the stage graph",
    "SF3": "migration",
    "SF4": "callback order",
    "SF5": "checks before running",
    "SF6": "resuming a run",
    "SF8": "reading a config file",
    "SF85": "converting a Catalyst config",
}


@dataclass(frozen=True)
class Rule:
    """One diagnostic code: its ``default`` level, a one-line ``summary``, how to ``fix`` it and
    whether its level is ``fixed``."""

    code: str
    default: Level
    summary: str
    fix: str
    fixed: bool = False

    @property
    def group(self) -> str:
        """The part of stagegraph that reports it: ``"migration"`` for ``SF301``."""
        return GROUPS.get(self.code[:4]) or GROUPS[self.code[:3]]

    @property
    def why_fixed(self) -> str:
        """Why a ``fixed`` rule's level cannot be changed (``""`` for the others)."""
        if not self.fixed:
            return ""
        if self.code.startswith("SF0"):
            return "it is reported while loading the file, before any lints setting exists"
        if self.code.startswith("SF6") or self.code == "SF815":
            return "it is reported when a run resumes, after compiling, where lints do not apply"
        if self.code.startswith("SF85"):
            return "it is reported by stagegraph convert, which reads no lints settings"
        if self.code.startswith("SF8"):
            return ("it is reported while reading the config file, before the experiment and "
                    "its lints settings exist")
        return "the plan could not run at all"


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {rule.code: rule for rule in rules}


RULES: dict[str, Rule] = _rules(
    # Loading an experiment file.
    Rule("SF001", "error", "the experiment file does not exist, or is neither a .py file nor a "
         "config file",
         "Check the path: EXP is path/to/file.py, path/to/file.py:NAME or a config file "
         "(.yaml, .yml, .json).", fixed=True),
    Rule("SF002", "error", "the experiment file has a syntax error",
         "Fix the line the message points at; `python path/to/file.py` shows the same error.",
         fixed=True),
    Rule("SF003", "error", "the experiment file raised while it was imported",
         "Fix the error at the line shown (install the missing package, create the missing "
         "file): the file's top level runs when it is loaded.", fixed=True),
    Rule("SF004", "error", "the file defines no experiment",
         "Define `experiment` in the file, or name the object to load: path/to/file.py:NAME.",
         fixed=True),
    Rule("SF005", "error", "the experiment object or function is not usable",
         "Make the attribute a stagegraph.Experiment, or a function that takes no arguments and "
         "returns one.", fixed=True),
    Rule("SF006", "error", "the experiment function raised",
         "Fix the error the function raised; it must return a stagegraph.Experiment.",
         fixed=True),
    Rule("SF007", "warning", "a file next to the experiment is named like a standard-library or "
         "installed module",
         "Rename the file (concurrent.py to my_concurrent.py) and the imports of it.",
         fixed=True),
    # The schema.
    Rule("SF100", "error", "compile() was not given an Experiment",
         "Build a stagegraph.Experiment('name', model=...), add stages with add_stage(...) and "
         "pass it to compile().", fixed=True),
    Rule("SF101", "error", "a stage parameter has an invalid value",
         "Give the parameter a value of its type and range, as the message says "
         "(num_epochs=3, not \"3\").", fixed=True),
    Rule("SF102", "error", "an unknown stage parameter",
         "Fix the parameter's name; the hint lists the parameters a stage has.", fixed=True),
    Rule("SF103", "error", "two stages share a name",
         "Give every stage its own name.", fixed=True),
    Rule("SF104", "error", "the experiment has no stages",
         "Add one: experiment.add_stage('train', loaders={...}).", fixed=True),
    Rule("SF105", "error", "a callback is not a stagegraph Callback instance",
         "Pass an instance, MyCallback(), not the class or another object.", fixed=True),
    Rule("SF106", "error", "a callback declaration or key is malformed",
         "Give the declaration its type (order an int, node 'all', 'master' or 'worker', ...) "
         "and write keys as 'namespace.name', such as 'metric.loss'.", fixed=True),
    Rule("SF107", "error", "a method named like an event is not one (a misspelt event)",
         "Rename the method to the event it means (the message suggests one); a helper method "
         "should not start with 'on_'."),
    Rule("SF108", "error", "an invalid name, device or rank",
         "Use a device stagegraph knows ('cpu', 'cuda', 'cuda:N', 'mps', 'auto'), a rank of "
         "single, master or worker, and non-empty strings as names.", fixed=True),
    Rule("SF109", "error", "the experiment's name, seed or deterministic flag is invalid",
         "Give the experiment a non-empty string name, an int seed and a bool deterministic.",
         fixed=True),
    Rule("SF110", "error", "a factory cannot be called with the arguments the runtime passes",
         "Make the factory take what the runtime passes: model, criterion and loader factories "
         "nothing, an optimizer factory the model, a scheduler factory the optimizer.",
         fixed=True),
    Rule("SF111", "error", "a lints setting names an unknown code or level, or changes a fixed "
         "rule",
         "Name a code stagegraph has (`stagegraph validate --explain CODE`) and one of the levels "
         "error, warning, info, allow; a fixed rule keeps its level.", fixed=True),
    # The stage graph.
    Rule("SF201", "error", "the stages form a cycle",
         "Remove one of the 'after' edges on the cycle: stages must form a DAG.", fixed=True),
    Rule("SF202", "error", "a stage follows an unknown stage",
         "Fix the stage name in after= (the message suggests a close one).", fixed=True),
    # Migration.
    Rule("SF301", "error", "a migrating callback shadows a differently configured declared one",
         "Drop the declared callback (the migrating instance and its state continue), or set "
         "migrate_from_previous_stage=False on the stage so the declared one runs; allowing "
         "SF301 keeps Catalyst's behaviour, where the migrating instance continues."),
    Rule("SF302", "error", "two predecessors hand over different callbacks under one name",
         "Rename one of the callbacks, or set migrate_from_previous_stage=False on the stage "
         "that follows both.", fixed=True),
    Rule("SF303", "warning", "a migrating callback shadows an identically configured declared "
         "one",
         "Drop the declared callback: the migrating one, configured the same, continues in its "
         "place with its state."),
    # Callback order.
    Rule("SF401", "error", "after/before names no callback of the stage",
         "Name a callback of the same stage in after= / before= (the hint lists them).",
         fixed=True),
    Rule("SF402", "error", "callbacks form a cycle",
         "Drop one after/before declaration on the cycle, or split a key that is both read and "
         "written along it.", fixed=True),
    # Checks before running.
    Rule("SF501", "error", "a key is read that nothing in the stage writes",
         "Add the callback that writes the key, or fix its name (the message suggests keys the "
         "stage writes); a reader that migrated from an earlier stage can be made stage-scoped, "
         "or kept out with migrate_from_previous_stage=False."),
    Rule("SF502", "warning", "a key is read whose source cannot be known before the run",
         "Declare the stage's batch_keys=[...] (or what the batch handler writes) so the key can "
         "be checked, or fix the key."),
    Rule("SF503", "error", "main_metric is not a valid metric of the stage",
         "Add a callback that writes the metric (a criterion, a metric callback), or set "
         "main_metric to one of the stage's valid metrics."),
    Rule("SF504", "error", "the valid_loader is not among the stage's loaders",
         "Add that loader, or set valid_loader= to one of the stage's loaders."),
    Rule("SF505", "error", "an inference stage has a training loader",
         "Drop the train* loader from the infer* stage, or rename the stage if it should train."),
    Rule("SF506", "warning", "a loader name has none of the known prefixes",
         "Name the loader with a train, valid or infer prefix, such as 'valid_holdout'."),
    Rule("SF507", "error", "a stage has no loaders",
         "Pass loaders={'train': ..., 'valid': ...} to add_stage."),
    Rule("SF509", "error", "the supervised handler has no model",
         "Pass model= to Experiment(...) or to add_stage(...), as a module or a factory."),
    Rule("SF510", "error", "a callback writes files and the run has no logdir",
         "Give the run a log directory: --logdir DIR on the command line, logdir= to "
         "compile() in Python; or drop the callback."),
    Rule("SF511", "error", "a training stage has no train* loader, so it trains nothing",
         "Name the training loader with the train prefix ('train'), or name the stage infer* if "
         "it should only predict."),
    Rule("SF512", "error", "a training stage has no optimizer",
         "Pass optimizer= to Experiment(...) or to add_stage(...)."),
    Rule("SF513", "error", "a training stage has no criterion (nothing writes its loss)",
         "Pass criterion= to Experiment(...) or to add_stage(...), or add a callback that writes "
         "the loss."),
    Rule("SF514", "error", "a scheduler in a stage without an optimizer",
         "Give the stage an optimizer, or move the scheduler to the stages that have one."),
    Rule("SF515", "error", "two callbacks of one stage claim the same exclusive resource",
         "Keep one of the two, or give them different resources (another optimizer key, another "
         "file prefix)."),
    Rule("SF516", "error", "a metric's direction contradicts minimize_metric / watch_minimize",
         "Set minimize_metric (or the callback's minimize=) to the metric's direction: False for "
         "accuracy-like metrics, True for losses and errors."),
    Rule("SF517", "warning", "a callback's code accesses a key its declarations contradict",
         "Make the declarations say what the code does (reads= / writes=), or change the code."),
    Rule("SF519", "error", "a stage, loader or callback name is not a safe, portable file name",
         "Rename it (the hint suggests a name): no '/', '\\', '..', control characters or "
         "characters Windows refuses, at most 200 bytes, no leading or trailing space or dot."),
    Rule("SF520", "error", "two stages, or two loaders of a stage, differ only in case",
         "Rename one of them: on a case-insensitive file system (macOS, Windows) their files "
         "would be the same."),
    Rule("SF521", "error", "code reads a batch metric or output in on_batch_start, before the "
         "batch writes it",
         "Read it in on_batch_end: the compiler then orders the callback after what writes it."),
    Rule("SF530", "error", "a stage's compile= option is not one torch.compile takes",
         "Write compile=True, compile=False, or a dict of torch.compile options (mode, "
         "fullgraph, dynamic, backend, options, disable), e.g. compile={'backend': "
         "'aot_eager'}.", fixed=True),
    Rule("SF531", "error", "a stage's fast_path= mapping names a loader the stage does not have",
         "Name the stage's loaders in fast_path={'valid': False} (the message suggests a close "
         "name), or write fast_path=True / False for every loader.", fixed=True),
    # Resuming a run.
    Rule("SF601", "error", "the plan changed since the checkpoint was written",
         "Resume with the experiment the checkpoint was written by, or pass --allow-plan-change "
         "(allow_plan_change=True) to resume anyway.", fixed=True),
    Rule("SF602", "warning", "a damaged checkpoint was skipped",
         "Nothing, if falling back to the checkpoint before it is right; remove the "
         "NAME.corrupt file once you no longer need it.", fixed=True),
    Rule("SF603", "error", "the resume path is not usable",
         "Pass the logdir of the run, or one of its checkpoints/resume/epoch-NNNNNN.pth files.",
         fixed=True),
    Rule("SF604", "warning", "there is no checkpoint to resume from, so the run starts afresh",
         "Nothing on a run's first start; otherwise check that --logdir names the run's log "
         "directory.", fixed=True),
    Rule("SF605", "error", "a checkpoint could not be loaded",
         "Resume with the code the checkpoint was written by, or start over without --resume.",
         fixed=True),
    # Reading a config file.
    Rule("SF801", "error", "the config file cannot be read: a YAML or JSON syntax error, or not "
         "UTF-8 text",
         "Fix the line and column the message points at (YAML indents with spaces, not tabs).",
         fixed=True),
    Rule("SF802", "error", "a key is written twice in one mapping",
         "Keep one of the two: YAML would silently keep only the last.", fixed=True),
    Rule("SF803", "error", "a value has the wrong type or is out of range",
         "Give the value the type the message names (num_epochs: 3, not \"3\").", fixed=True),
    Rule("SF804", "error", "an unknown key",
         "Fix the key's spelling (the message suggests a close one); the hint lists the keys "
         "that mapping takes.", fixed=True),
    Rule("SF805", "error", "a required key is missing",
         "Add the key (experiment: NAME, stages: {...}, _target_: pkg.module.Name).",
         fixed=True),
    Rule("SF806", "error", "a ${...} names no value of the file, or puts a mapping inside text",
         "Name a value of the file by its keys, ${stages.train.num_epochs}; write \\${ for a "
         "literal ${.", fixed=True),
    Rule("SF807", "error", "references with ${...} form a cycle",
         "Give one of the values on the cycle directly.", fixed=True),
    Rule("SF808", "error", "a --set names no setting of the file",
         "Name a key of the file, from the top: --set stages.train.num_epochs=5.", fixed=True),
    Rule("SF809", "error", "a --set gives a value of the wrong type or no YAML value",
         "Give a value of the setting's type, as YAML: --set stages.train.num_epochs=5.",
         fixed=True),
    Rule("SF810", "error", "a _target_ names a module or name that cannot be found",
         "Fix the dotted path (pkg.module.Name) or make the module importable: install it, or "
         "put it next to the config file.", fixed=True),
    Rule("SF811", "error", "a _target_ is given a keyword argument it does not take",
         "Fix the argument's name (the message suggests one) or remove it.", fixed=True),
    Rule("SF812", "error", "a built-in callback is unknown or cannot be made with its arguments",
         "Name a built-in callback by its class name (AccuracyCallback) and give it the "
         "arguments docs/callbacks.md lists; name your own by dotted path.", fixed=True),
    Rule("SF813", "error", "a callback of yours is not a Callback, or cannot be imported or made",
         "Fix the error the message quotes: the class must subclass stagegraph.Callback, its "
         "module must import and the class accept the arguments the config gives.", fixed=True),
    Rule("SF814", "warning", "a callback's or handler's declarations cannot be read without "
         "importing it",
         "Define the callback as a class with literal declarations (reads = (...), order = ...) "
         "in a .py file, or check the run with `stagegraph run --check`.", fixed=True),
    Rule("SF815", "error", "the config changed since the checkpoint was written",
         "Resume with the config (and --set values) the checkpoint was written by, or pass "
         "--allow-plan-change to resume anyway.", fixed=True),
    # Converting a Catalyst 20.x config (stagegraph convert catalyst).
    Rule("SF850", "error", "the file is not a Catalyst 20.x config, so nothing is converted",
         "Convert the YAML file catalyst-dl run --config read: it has a stages: mapping.",
         fixed=True),
    Rule("SF851", "warning", "the stages' loaders call a dataset factory that is yours to write",
         "Write the factory the output names, from your Experiment.get_datasets: it takes "
         "(stage, **data_params) and returns {name: DataLoader}.", fixed=True),
    Rule("SF852", "warning", "a registry name is not a torch class, so its import path is a "
         "guess", "Point _target_ at the class (in your expdir module, or where it lives), and "
         "port a callback of yours to stagegraph.Callback.", fixed=True),
    Rule("SF853", "warning", "a Catalyst callback has no stagegraph equivalent and is left out",
         "Use what the hint names, or write a stagegraph.Callback of your own.", fixed=True),
    Rule("SF854", "warning", "a setting has no stagegraph equivalent and is left out",
         "Do what the hint says where it matters (in a factory or a callback of yours), or drop "
         "the setting.", fixed=True),
    Rule("SF855", "warning", "a setting is translated, but stagegraph's behaviour differs from "
         "Catalyst's", "Read how it differs; change the output where the difference matters to "
         "you.", fixed=True),
    Rule("SF856", "info", "a setting moved: to the command line, a new name, or another stage",
         "Nothing to fix; pass the command-line option the message names when you run.",
         fixed=True),
    Rule("SF857", "warning", "a key is not a Catalyst 20.x setting the converter knows, so it "
         "is left out", "Fix the key's spelling (the hint suggests one), or carry it over by "
         "hand.", fixed=True),
    Rule("SF858", "warning", "a value is not of the shape Catalyst takes, so it is left out",
         "Fix the value in the Catalyst file (Catalyst would fail on it too) and convert again.",
         fixed=True),
)


def rule(code: str) -> Rule:
    """The rule for ``code``; ``KeyError`` with the known codes when there is none."""
    try:
        return RULES[code]
    except KeyError:
        raise KeyError(f"no diagnostic code {code!r}; codes: {', '.join(RULES)}") from None


def closest_code(text: object) -> str | None:
    """The code ``text`` most likely means: ``"sf301"``, ``"301"``, ``"SF3O1"`` -> ``"SF301"``."""
    if not isinstance(text, str):
        return None
    cleaned = text.strip().upper()
    if cleaned.startswith("SF"):  # letters that look like digits: SF3O1, SF5l0
        cleaned = "SF" + cleaned[2:].translate(str.maketrans("OIL", "011"))
    elif cleaned.isdigit():
        cleaned = "SF" + cleaned.zfill(3)
    if cleaned in RULES:
        return cleaned
    matches = difflib.get_close_matches(cleaned, list(RULES), n=1, cutoff=0.75)
    return matches[0] if matches else None


def level_table() -> str:
    """The Markdown table of every code and its default level, as docs/diagnostics.md shows it
    (a test regenerates it and compares, so the page cannot drift from the registry)."""
    rows = ["| code | default level | can be changed | what it reports |",
            "|---|---|---|---|"]
    rows += [f"| [{r.code}](#{r.code.lower()}) | {r.default} | {'no' if r.fixed else 'yes'} "
             f"| {r.summary} |" for r in RULES.values()]
    return "\n".join(rows)
