"""`stagegraph run`: compile EXP for this process, then run the plan with the runtime, or start
torchrun (``--ddp N``). A failure is reported as where it happened and why, without a traceback
unless asked. Only `run_plan` imports the runtime, and with it torch.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Any

from stagegraph import launch
from stagegraph.cli.options import (
    DEVICE_HELP,
    common_options,
    compile_exp,
    positive_int,
    seconds,
)
from stagegraph.cli.validate import located, report_before_run, summary
from stagegraph.compiler import ExecutionPlan
from stagegraph.loading import LoadProblem


def add_parser(sub: Any) -> None:
    run = sub.add_parser("run", parents=[common_options()], help="compile and run the experiment")
    run.add_argument("--device", help=DEVICE_HELP)
    run.add_argument("--logdir", help="where checkpoints and logs go")
    run.add_argument("--check", action="store_true",
                     help="check run: a few batches per loader and epochs per stage")
    run.add_argument("--quiet", action="store_true", help="no console logging")
    run.add_argument("--ddp", type=positive_int("--ddp", "processes"), metavar="N",
                     help="distributed data parallel on N local processes (starts torchrun)")
    run.add_argument("--max-restarts", type=_restart_count, metavar="N", default=0,
                     help="with --ddp: when a process fails, torchrun restarts them all, up to N "
                          "times, and they resume from the latest checkpoint")
    run.add_argument("--dist-timeout", type=seconds, metavar="SECONDS",
                     help="how long a rank waits for the others in a distributed run "
                          "(default 600; sets STAGEGRAPH_DIST_TIMEOUT)")
    run.add_argument("--resume", nargs="?", const=True, default=False, metavar="PATH",
                     help="continue from the latest complete checkpoint in the logdir, or from "
                          "PATH (a logdir or a checkpoints/resume/epoch-NNNNNN.pth file)")
    run.add_argument("--allow-plan-change", action="store_true",
                     help="with --resume: resume even if the plan changed since the checkpoint "
                          "(each change is named)")
    run.add_argument("--overwrite", action="store_true",
                     help="start over in a logdir holding an unfinished run: the old run is "
                          "moved aside, and deleted once the new run's first checkpoint is saved")
    run.add_argument("--checkpoint-every", type=positive_int("--checkpoint-every", "batches"),
                     metavar="N",
                     help="also write a resume checkpoint after every N batches of a train "
                          "loader, to resume mid-epoch (needs --logdir)")
    run.set_defaults(command=cmd_run)


def _restart_count(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"--max-restarts {value!r}: give a number of restarts "
                                         ">= 0")
    return int(value)


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.checkpoint_every is not None and args.logdir is None:
        return "--checkpoint-every writes into the logdir: give --logdir DIR"
    if args.allow_plan_change and args.resume is False:
        return "--allow-plan-change only applies with --resume"
    if args.overwrite and args.resume is True:
        return ("--overwrite starts the logdir's run over and --resume continues it: pass one "
                "of them")
    if args.max_restarts and args.ddp is None:
        return ("--max-restarts applies with --ddp N (under torchrun, give it to torchrun: "
                "torchrun --max-restarts N ...)")
    return None


def cmd_run(args: argparse.Namespace) -> int:
    problem = _usage_problem(args)
    if problem is not None:
        print(f"stagegraph run: error: {problem}", file=sys.stderr)
        return 2
    if args.dist_timeout is not None:
        os.environ[launch.TIMEOUT_VARIABLE] = f"{args.dist_timeout:g}"
    try:
        env = launch.torchrun_env()  # under torchrun: compile this rank's plan
    except launch.LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.ddp is not None and env is not None:
        print("error: --ddp starts torchrun, but this process was already started by torchrun; "
              "drop --ddp", file=sys.stderr)
        return 2
    notes: list[LoadProblem] = []
    plan = compile_exp(args, notes=notes, verbose=not args.quiet,
                       rank=env.kind if env else "single", static=False)
    if not plan.ok:
        for diagnostic in [*notes, *located(plan)]:
            print(diagnostic, file=sys.stderr)
        print(f"not running: {summary(plan)}", file=sys.stderr)
        return 1
    # Warnings and notes, printed once: under torchrun by the master rank (whose plan they are),
    # so not by the process that `--ddp` starts torchrun from.
    if (env.kind == "master") if env is not None else args.ddp is None:
        report_before_run(plan, notes=notes)
    if args.ddp is not None:
        return launch.run_torchrun(launch.torchrun_command(
            args.ddp, launch.rank_arguments(args), max_restarts=args.max_restarts))
    return run_plan(plan, check=args.check, show_traceback=args.traceback, resume=args.resume,
                    allow_plan_change=args.allow_plan_change, overwrite=args.overwrite,
                    checkpoint_every=args.checkpoint_every)


def run_plan(plan: ExecutionPlan, *, check: bool, show_traceback: bool,
             resume: bool | str = False, allow_plan_change: bool = False,
             overwrite: bool = False, checkpoint_every: int | None = None) -> int:
    """Run ``plan``; a failure prints where it happened and its cause, not a traceback. A run
    stopped by SIGTERM or SIGUSR1 prints where and its checkpoint, and returns 75."""
    from stagegraph.runtime import Runner  # torch is imported here, and only here
    from stagegraph.runtime.errors import RunError, StagegraphRuntimeError, plain_warnings

    try:
        with plain_warnings():
            runner = Runner(plan, check=check, resume=resume, allow_plan_change=allow_plan_change,
                            overwrite=overwrite, checkpoint_every=checkpoint_every)
            # A group torchrun restarted says where it resumed once, on rank 0 (see `elastic`).
            if runner.resumed_from is not None and not runner.restarted:
                print(f"resuming from {runner.resumed_from}: {runner.resume_position}",
                      file=sys.stderr)
            runner.run()
    except StagegraphRuntimeError as err:  # PlanError, LogdirError, DeviceError, RunError...
        if isinstance(err, RunError):
            return _run_failed(err, show_traceback)
        print(f"cannot run: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        return _run_failed(err, show_traceback)
    if runner.stopped is not None:
        from stagegraph.runtime.resume.midepoch import EXIT_STOPPED

        print(f"stagegraph: {runner.stopped.message()}", file=sys.stderr)
        return EXIT_STOPPED
    return 0


def _run_failed(err: Exception, show_traceback: bool) -> int:
    cause = err.__cause__
    if isinstance(cause, KeyboardInterrupt):
        raise cause from None
    if show_traceback:
        traceback.print_exception(err)
    # A RunError already says where and why ("run failed at stage 'train', epoch 3, ...").
    message = str(err) if cause is not None else f"run failed: {type(err).__name__}: {err}"
    print(f"error: {message}", file=sys.stderr)
    described = f"{type(cause).__name__}: {cause}"
    if cause is not None and described not in message:
        print(f"  caused by {described}", file=sys.stderr)
    print("  hint: rerun with --traceback for the full Python traceback", file=sys.stderr)
    return 1
